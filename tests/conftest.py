pytest_plugins = ["tests.fixtures.conformance", "tests.fixtures.broker"]
