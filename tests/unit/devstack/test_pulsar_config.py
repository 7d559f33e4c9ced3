from annostack.devstack.pulsar import render_properties


def test_replaces_existing_keys_and_appends_missing_ones() -> None:
    template = (
        "# brokerServicePort=1 in a comment stays\nbrokerServicePort=6650\nclusterName=standalone\n"
    )
    rendered = render_properties(
        template, {"brokerServicePort": "16650", "webServicePort": "18080"}
    )
    assert rendered.splitlines() == [
        "# brokerServicePort=1 in a comment stays",
        "brokerServicePort=16650",
        "clusterName=standalone",
        "webServicePort=18080",
    ]
