"""datapipe-analytics dashboard: Streamlit views over the published marts (read-only)."""
