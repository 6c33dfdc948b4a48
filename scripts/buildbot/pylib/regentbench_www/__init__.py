# A placeholder for Buildbot's "base" web plugin (the buildbot-www package,
# which Debian does not ship). Buildbot's web service refuses to start
# without one; with this it serves the REST API under /api/v2 and a blank
# page at /, which is all the benchmarks need.
from buildbot.www.plugin import Application

ep = Application(__name__, "Regent benchmark placeholder for buildbot-www (no UI)")
