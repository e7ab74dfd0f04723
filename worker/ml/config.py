"""Job parameters live in `jobspec.params`, shared with the web; re-exported here."""

from jobspec.params import *  # noqa: F403
