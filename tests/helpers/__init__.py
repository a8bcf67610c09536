"""What several test modules share: paths, record builders, child-process targets, a hostile server."""
