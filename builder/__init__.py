"""Build, verify, smoke-test and publish gosu-based container base images."""
