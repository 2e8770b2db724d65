"""What several test files share: tiny backbones of every family, a local Hub, the SmolLM2 backbone, small
images and episodes, and the child-process preambles. The helpers' own tests are the
test_*.py files beside them."""
