"""The definition language: models, static checks, graph, mapping, plan, retry policy, schema.

Pure logic: nothing here touches the database, the network or Prefect.
"""
