"""The key schema: every Redis key minicelery uses, defined once here and named by what it
holds. Nothing else in the package builds a key from a string.

Under the prefix ``p`` (the ``key_prefix`` setting, ``minicelery`` by default)::

    p:q:{queue}:0..9      list    a queue's messages, one list per priority
    p:wake:{queue}        list    a token that idle workers block on (BLPOP)
    p:levels:{queue}      set     the queue's non-empty priorities
    p:hold:{consumer}     hash    tag -> entry, what a worker reserved and has not acked
    p:consumers           zset    consumer -> last heartbeat (server time);  ...:recovered
                                  when a lost-worker check last ran;  ...:heard  when Redis
                                  was heard from again after a silence (no one is judged
                                  lost for a while after it); ``{p:consumers}`` on a cluster
    p:seq                 string  the delivery-tag counter
    p:qhold:{queue}:<consumer>, p:seq:{queue}, p:queues, {p}:moving
                          on Redis Cluster: a consumer's hold and the tag counter per
                          queue, the queues ever consumed (set), scheduled messages on their
                          way to their queues (hash entry -> when taken)
    {p}:scheduled         zset    eta/countdown entries scored by due time
    {p}:schedwake         list    a token that wakes the schedulers when an entry is added
    {p}:dead              hash    id -> dead letter;  {p}:dead:index  zset id -> when
    p:count:<name>        string  expiring counters (how often a message was lost)
    p:result:{task}       string  a task's result record
    p:result:{task}:stream stream every record of the task, read by waiting clients
    p:group:{group}       string  a saved GroupResult
    p:chord:{group}       hash    header index -> finished part;  ...:claim  who sends the body;
                                  ...:added  parts added to the header while it runs
    p:revoked             zset    revoked task id -> when it may be forgotten
    {p:revoked}:news      stream  every revoke (ids, or stamps), read by consuming children
    p:control             channel remote-control commands;  p:reply:<ticket>  their replies
    p:events              stream  monitoring events
    p:lease:{name}        string  the beat lease (holder, with a TTL)
    p:lastrun:{name}      hash    entry -> its last claimed run;  p:runcount:{name}  counts
    {p:dashboard}:tasks   hash    the dashboard's task history: id -> record;  ...:seen  zset
                                  id -> first seen;  ...:cursor  the last event read;
                                  ...:children:<id>  set  a task's children

Hash tags (the part in braces decides the Cluster slot) mark what must be atomic together:
a queue (its lists, levels and wake token), a group (a chord's parts and claim), a task (its
result and its stream), a consumer (its hold), a lease (with the runs it guards). The
scheduled set, its wake token and the dead letters are the only keys of the whole prefix
that share one tag (``{p}``).

One Redis server runs every script whatever the tags. On Redis Cluster
(:mod:`minicelery.broker.cluster`) no script may touch keys of two slots, so there the
broker keeps a consumer's hold per queue (``qhold``), in the queue's slot: a reserve,
requeue or give-back is one script on one queue's slot. What crosses slots is done in
steps that may repeat but never lose a message: a scheduled message is taken into
``{p}:moving`` before it is queued, a result is stored before its message is acknowledged,
a dead letter is written before the message leaves the hold, and a beat run is claimed on
its lease's slot before it is published.

``publish.lua``, ``chord_part.lua``, ``lease*.lua``, ``marks.lua`` and ``heartbeat.lua``
stay within one tag everywhere.
"""

from __future__ import annotations

PRIORITIES = range(10)


class KeySchema:
    """The keys of one prefix. Fixed keys are attributes, computed once; the others are
    methods of the thing they belong to (called on the hot path: plain string joins)."""

    def __init__(self, prefix: str, cluster: bool = False) -> None:
        self.prefix = prefix
        p = f"{prefix}:"
        self._p = p
        # On a cluster the heartbeats and their two clocks share a tag (one script reads them)
        consumers = f"{{{p}consumers}}" if cluster else p + "consumers"
        self.consumers = consumers
        self.recovered_at = consumers + ":recovered"
        self.heard_again_at = consumers + ":heard"
        self.seq = p + "seq"
        self.known_queues = p + "queues"
        self.moving = f"{{{prefix}}}:moving"
        self.scheduled = f"{{{prefix}}}:scheduled"
        self.schedule_wake = f"{{{prefix}}}:schedwake"
        self.dead_letters = f"{{{prefix}}}:dead"
        self.dead_index = f"{{{prefix}}}:dead:index"
        self.revoked = p + "revoked"
        self.revoke_news = f"{{{self.revoked}}}:news"  # the revoked set's Cluster slot
        self.control = p + "control"
        self.events = p + "events"
        dashboard = f"{{{prefix}:dashboard}}:"  # one tag: the history changes in one MULTI
        self.dashboard_tasks = dashboard + "tasks"
        self.dashboard_seen = dashboard + "seen"
        self.dashboard_cursor = dashboard + "cursor"
        self.dashboard_children_head = dashboard + "children:"  # + a task id
        # SCAN pattern of every priority list (the prefix escaped: it is not a glob)
        self.queue_pattern = "".join("\\" + c if c in "*?[]\\" else c for c in p) + "q:{*}:[0-9]"

    # -- queues --------------------------------------------------------------------------
    def queue(self, queue: str, priority: int) -> str:
        """The list of ``queue``'s messages of ``priority`` (0-9)."""
        return f"{self._p}q:{{{queue}}}:{priority}"

    def queue_of(self, key: str) -> str | None:
        """The queue a priority list's key belongs to (None for another key)."""
        head = self._p + "q:{"
        if not key.startswith(head) or "}:" not in key:
            return None
        return key[len(head) :].rsplit("}:", 1)[0]

    def wake(self, queue: str) -> str:
        """The token list an idle worker of ``queue`` blocks on."""
        return f"{self._p}wake:{{{queue}}}"

    def levels(self, queue: str) -> str:
        """The set of ``queue``'s non-empty priority levels (spares a reserve ten LPOPs)."""
        return f"{self._p}levels:{{{queue}}}"

    def hold(self, consumer: str) -> str:
        """What ``consumer`` has reserved and not yet acknowledged."""
        return f"{self._p}hold:{{{consumer}}}"

    def hold_parts(self) -> tuple[str, str]:
        """What comes before and after a consumer's id in its hold key (for scripts that
        find holds by consumer id)."""
        head, tail = self.hold("\0").split("\0")
        return head, tail

    # -- on Redis Cluster (see :mod:`minicelery.broker.cluster`) ----------------------------
    def queue_hold(self, queue: str, consumer: str) -> str:
        """What ``consumer`` reserved from ``queue`` and has not acknowledged, in the
        queue's slot: on a cluster a reserve moves messages within one slot."""
        return f"{self._p}qhold:{{{queue}}}:{consumer}"

    def queue_seq(self, queue: str) -> str:
        """The delivery-tag counter of ``queue``'s holds (in the queue's slot)."""
        return f"{self._p}seq:{{{queue}}}"

    def counter(self, name: str) -> str:
        """An expiring counter (e.g. how many times a message's worker was lost)."""
        return f"{self._p}count:{name}"

    # -- results -------------------------------------------------------------------------
    def result(self, task_id: str) -> str:
        """A task's latest result record."""
        return f"{self._p}result:{{{task_id}}}"

    def result_stream(self, task_id: str) -> str:
        """Every record of a task, in order, for clients waiting on it."""
        return f"{self._p}result:{{{task_id}}}:stream"

    def result_waiting(self, task_id: str) -> str:
        """Set while a client waits on a task: only then are its records streamed."""
        return f"{self._p}result:{{{task_id}}}:waiting"

    def group(self, group_id: str) -> str:
        """A saved ``GroupResult``."""
        return f"{self._p}group:{{{group_id}}}"

    def chord_parts(self, group_id: str) -> str:
        """The finished parts of a chord's header, by header index."""
        return f"{self._p}chord:{{{group_id}}}"

    def chord_claim(self, group_id: str) -> str:
        """The id of the header task that completed the chord (and sends its body)."""
        return f"{self._p}chord:{{{group_id}}}:claim"

    def chord_added(self, group_id: str) -> str:
        """How many parts running header tasks added to the chord (``add_to_chord``)."""
        return f"{self._p}chord:{{{group_id}}}:added"

    # -- remote control ------------------------------------------------------------------
    def reply(self, ticket: str) -> str:
        """The replies to one remote-control command."""
        return f"{self._p}reply:{ticket}"

    # -- coordination (beat) -------------------------------------------------------------
    def lease(self, name: str) -> str:
        """Who holds lease ``name`` (with a TTL)."""
        return f"{self._p}lease:{{{name}}}"

    def last_runs(self, name: str) -> str:
        """The last claimed run of each entry guarded by lease ``name``."""
        return f"{self._p}lastrun:{{{name}}}"

    def run_counts(self, name: str) -> str:
        """How many runs of each entry guarded by lease ``name`` were claimed."""
        return f"{self._p}runcount:{{{name}}}"
