"""The realtime agents guide's front-desk example: two tools and a password guardrail.

Referenced from ``config/agents.yaml`` as ``callserver.examples.frontdesk:get_weather`` etc.
They return canned answers: replace them with calls to real systems.
"""

from __future__ import annotations

from typing import Any

from agents.guardrail import GuardrailFunctionOutput


def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city to report on, e.g. "Paris".
    """
    return f"The weather in {city} is sunny, 72°F"


def book_appointment(date: str, time: str, service: str) -> str:
    """Book an appointment.

    Args:
        date: Day of the appointment, e.g. "2026-12-01".
        time: Time of day, e.g. "14:30".
        service: What the appointment is for.
    """
    return f"Appointment booked for {service} on {date} at {time}"


def sensitive_data_check(_context: Any, _agent: Any, output: Any) -> GuardrailFunctionOutput:
    """Stop the agent from saying anything about passwords (trips on "password")."""
    return GuardrailFunctionOutput(
        tripwire_triggered="password" in str(output).lower(),
        output_info=None,
    )
