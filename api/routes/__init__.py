"""The API's endpoints, one module per group; api/app.py includes every router."""
