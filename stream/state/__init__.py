"""Window and drift state that follows its partition: the changelog, checkpoints, restore and replay."""
