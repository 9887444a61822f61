"""datapipe-analytics transform component: the Great Expectations gate, write-audit-publish and
the dashboard's read-only grants for the dbt marts (see docs/transform.md)."""

__version__ = "0.1.0"
