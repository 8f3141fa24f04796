"""The simulated lab behind ``miglab demo``: fake hosts and the tools they answer with."""
