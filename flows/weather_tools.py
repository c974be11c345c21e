"""The functions of the OpenAI function-calling tutorial, for flows/weather.yaml and flows/chat.yaml."""

from __future__ import annotations

import json


def get_current_weather(location: str, unit: str = "fahrenheit") -> str:
    """Get the current weather in a given location (a fixed answer, as in the tutorial)."""
    weather_info = {
        "location": location,
        "temperature": "72",
        "unit": unit,
        "forecast": ["sunny", "windy"],
    }
    return json.dumps(weather_info)


def get_foo(location: str, foo: str) -> str:
    """The tutorial's second function, there to show the model choosing between two."""
    return json.dumps({"location": location, "foo": foo})
