"""An example Python enrichment: a context saying which part of the site the
page belongs to, from the first segment of its path."""


def process(event, config):
    path = event.fields.get("page_urlpath")
    if not path:
        return None
    section = path.strip("/").split("/", 1)[0] or "home"
    return [
        {
            "schema": "iglu:com.example/site_section/jsonschema/1-0-0",
            "data": {"section": section},
        }
    ]
