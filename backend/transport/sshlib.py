"""asyncssh, imported once for the whole of miglab, without its import-time warnings.

cryptography 51 warns that DSA is deprecated the moment asyncssh's modules name the DSA
key types, which they do at import. Nobody running miglab can act on that (miglab never
offers DSA keys), and printed on stderr it would stand in front of every CLI message.
Only that warning, only during the import, is silenced: anything asyncssh warns about
later still shows.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"DSA is deprecated")
    import asyncssh

__all__ = ["asyncssh"]
