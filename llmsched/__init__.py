"""The app: the `llmsched` command line wiring the scheduler core and the Prefect pipelines."""
