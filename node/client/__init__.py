"""What runs in the user's process: RemoteNode, pointers, VirtualNode."""
