"""One router per area: health, portal, readings, billing."""
