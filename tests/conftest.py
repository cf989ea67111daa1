pytest_plugins = ["tests.fixtures.conformance", "tests.fixtures.broker", "tests.fixtures.browser"]
