"""The JavaScript enrichment of Snowplow's Core2015RefreshSpec, as a Plowline
Python enrichment: a context with the app id upper-cased."""


def process(event, config):
    app_id = event.fields.get("app_id")
    if app_id is None:
        return None
    return [
        {
            "schema": "iglu:com.acme/app_id/jsonschema/1-0-0",
            "data": {"appIdUpper": app_id.upper()},
        }
    ]
