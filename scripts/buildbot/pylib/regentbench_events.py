"""Event log for benchmarking Buildbot.

EventLog is a Buildbot service that subscribes to the master's message
queue and appends one JSON object per line to a file for each event the
benchmarks time: a build request created, a build created, a step started,
a build finished, a change recorded. Each line carries the wall-clock time
at which the master handled the event, in seconds since the epoch with
microseconds; Buildbot's REST API only keeps whole seconds.
"""
import json
import time

from twisted.internet import defer
from buildbot.util import service

# (message-queue filter, event name, fields copied from the message)
SUBSCRIPTIONS = [
    (('buildrequests', None, 'new'), 'request_new', ('buildrequestid', 'builderid')),
    (('builds', None, 'new'), 'build_new', ('buildid', 'buildrequestid', 'workerid')),
    (('steps', None, 'started'), 'step_started', ('stepid', 'buildid', 'number')),
    (('builds', None, 'finished'), 'build_finished', ('buildid', 'buildrequestid', 'results')),
    (('changes', None, 'new'), 'change_new', ('changeid', 'revision')),
]


class EventLog(service.BuildbotService):
    """Appends timed events to the file at path."""

    def checkConfig(self, path=None):
        if not path:
            from buildbot import config
            config.error("EventLog needs a path")

    @defer.inlineCallbacks
    def reconfigService(self, path=None):
        # A reconfiguration keeps the file and the subscriptions it has.
        if getattr(self, 'out', None) is not None:
            return
        self.out = open(path, 'a', buffering=1, encoding='utf-8')
        self.consumers = []
        for filt, name, fields in SUBSCRIPTIONS:
            consumer = yield self.master.mq.startConsuming(self._handler(name, fields), filt)
            self.consumers.append(consumer)

    def _handler(self, name, fields):
        def handle(_key, msg):
            line = {'ev': name, 't': round(time.time(), 6)}
            for f in fields:
                line[f] = msg.get(f)
            self.out.write(json.dumps(line) + '\n')
        return handle

    def stopService(self):
        for consumer in getattr(self, 'consumers', []):
            consumer.stopConsuming()
        self.consumers = []
        return super().stopService()
