"""Secret sharing in the user's process: SharedTensor, party groups, making shares."""
