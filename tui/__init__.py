"""The console (Textual) and the command line."""

import os

# Textual puts a changed screen on the terminal at most TEXTUAL_FPS times a second (60
# unless set): a key's frame waited up to 17 ms for its slot, a third of the 50 ms a key
# may take. Frames are still made only when something changed, so an idle console does
# no more work. It must be set before Textual is imported; a user's own value wins.
os.environ.setdefault("TEXTUAL_FPS", "240")
