"""A user's Python enrichment for the tests: the app id upper-cased, as in
Snowplow's JavaScript enrichment example, plus what it was given."""


def process(event, config):
    app_id = event.fields.get("app_id")
    if app_id is None:
        return None
    data = {
        "appIdUpper": app_id.upper() + config.get("suffix", ""),
        "contexts": len(event.contexts),
        "unstruct": event.unstruct_event["schema"] if event.unstruct_event else None,
        "headers": [name for name, _ in event.headers],
    }
    return [{"schema": "iglu:com.acme/app_id/jsonschema/1-0-0", "data": data}]


def tamper(event, config):
    # Tries to change what it was given: none of it may reach the event.
    event.contexts.append({"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {}})
    event.derived_contexts.clear()
    config["changed"] = True
    event.fields["app_id"] = "changed"


def fails(event, config):
    return 1 / 0


def wrong_shape(event, config):
    return [{"schema": "not an iglu uri", "data": {}}]


def not_a_list(event, config):
    return {"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {}}


not_callable = 42
