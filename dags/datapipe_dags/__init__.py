"""datapipe_dags: building blocks of the pipeline's Airflow DAGs (configuration, steps, pods, alerts).

Lives inside the DAGs folder (Airflow puts that folder on sys.path) and is excluded from DAG
discovery by `dags/.airflowignore`.
"""
