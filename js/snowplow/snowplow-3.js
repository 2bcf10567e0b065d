// Test-only entry: the official Snowplow browser tracker 3.x, as
// window.snowplowTracker.
import * as tracker from "snowplow-browser-tracker-3";
window.snowplowTracker = tracker;
