"""The Airflow side of newsmon: task helpers and the feed trigger the DAGs in dags/ share.

An installed package rather than a file in dags/: the triggerer imports a trigger
by its class path, and the DAG folder is not on its import path. `pipeline` stays
free of Airflow imports; this package is where the two meet.
"""
