"""callserver: answer phone calls with OpenAI realtime voice agents."""

__version__ = "0.1.0"
