"""Services: use cases shared by the operator, the API and the workers."""
