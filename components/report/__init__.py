"""The review: the Review component, its results reader, template and CLI, and the run summary."""
