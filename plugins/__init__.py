"""Built-in retrievers, personalizers, generators and reporters of lamp-harness."""
