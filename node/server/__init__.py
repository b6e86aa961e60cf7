"""What runs inside a node: session, store, executor and the op table."""
