// Test-only entry: the official Snowplow browser tracker 4.x, as
// window.snowplowTracker.
import * as tracker from "snowplow-browser-tracker-4";
window.snowplowTracker = tracker;
