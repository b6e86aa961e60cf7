"""Secret sharing inside a node: the mpc_* kinds, a party's steps, the mailbox of letters between parties."""
