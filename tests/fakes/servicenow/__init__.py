"""A fake ServiceNow instance (Table API) that behaves like the real one, for tests and benchmarks.

- tables ``incident`` (and the other task tables), ``sys_audit``, ``sys_audit_delete``,
  ``sys_journal_field``, ``sys_choice``, ``sys_user``, ``sys_user_group``; every value a
  string, references stored as sys_ids and written as
  ``{"link": ".../api/now/table/<table>/<id>", "value": "<id>"}`` (or ``""``), or just the
  sys_id with ``sysparm_exclude_reference_link=true``; dates ``YYYY-MM-DD HH:MM:SS`` in UTC;
  a clock (``now``) that ticks on every change;
- ``GET /api/now[/v1|/v2]/table/{table}[/{sys_id}]`` with ``sysparm_query`` (encoded queries with
  ServiceNow's precedence, see ``query``), ``sysparm_limit`` (default and cap ``max_limit``),
  ``sysparm_offset``, ``sysparm_fields`` (dot-walks too), ``sysparm_display_value=false|true|all``,
  ``sysparm_exclude_reference_link``, ``sysparm_no_count``, ``sysparm_suppress_pagination_header``
  and name=value filters (AND-ed to the query; a choice label may stand for its value);
  ``X-Total-Count`` and ``Link`` (first; prev from offset > 0; next while more follow; last at
  ``total - limit``); v1 answers 404 for an empty result, v2 and unversioned an empty list; 400
  for an invalid parameter value; unknown ``sysparm_`` names and unknown fields are ignored (as
  the real instance does; ``invalid_query_returns_no_rows`` for the stricter property); without
  ORDERBY rows come in sys_id order (a primary-key scan); ORDERBY sorts by stored values, a
  reference by its display value; ``task`` is a table of its own (no inheritance);
- display values: choice labels from ``sys_choice`` (the table's, else ``task``'s), reference
  display fields (``name``, ``number``), dates in ``user_timezone`` and ``user_date_format``
  (query date literals are read in ``user_timezone`` too); durations as ``1 Day 4 Hours``;
- records changed through ``modify()`` follow the out-of-box rules and write ``sys_audit`` rows
  (see ``records``; ``audit_inserts`` also audits new records); ``add_journal()`` writes
  ``sys_journal_field`` only (journal entries write no sys_audit row here); ``set_choice()``
  changes the instance's choice lists (seeded with the documented defaults); ``generate()``
  makes realistic histories of incidents or request items (``generate``);
- HTTP Basic auth and OAuth 2 (``POST /oauth_token.do``, password and refresh_token grants,
  Bearer tokens that expire after ``token_lifetime`` seconds; ``basic_auth = False`` refuses
  Basic credentials); 401 with ServiceNow's body;
- ``delete_record()`` removes a record and writes a ``sys_audit_delete`` row (tablename,
  documentkey, sys_created_on, ...);
- ``audit_readable`` / ``journal_readable`` / ``deletions_readable`` False: 403 ACL errors on
  ``sys_audit`` / ``sys_journal_field`` / ``sys_audit_delete``; ``hidden``
  sys_ids are counted but left out of pages (the limit applies before ACLs, as on the real API);
- ``rate_limit`` per ``rate_window_seconds`` (real time): ``X-RateLimit-Limit``, ``-Remaining``,
  ``-Reset`` and ``-Rule`` on every response, then 429 with ``Retry-After``;
- knobs ``fail_next``, ``rate_limit_next``, ``slow_next``, ``invalid_json_next``,
  ``html_error_next`` (each may target a path and skip matching requests first), and
  ``on_request`` (a hook run before each answer: change records mid-sync, kill a process);
  ``max_url_length`` (414 for longer URLs).

Run it as a server process (the benchmark does)::

    python -m tests.fakes.servicenow --port 0 --incidents 100000 --audit-rows 1000000 --seed 1

(prints ``listening http://127.0.0.1:PORT``; ``--cache DIR`` keeps the generated instance as a
pickle for the next start; ``python -m tests.fakes.servicenow.measure URL`` pages through it).
Modules: ``schema`` (tables, choices), ``store`` (rows, indexes), ``instance`` (clock, users,
choices, save/load), ``records`` (changes and rules), ``generate``, ``query`` (encoded queries),
``plan`` (answering them from the indexes), ``render`` (raw and display values), ``access``
(auth, OAuth, rate limit), ``wire`` (options, Link, error bodies), ``server`` (routing, knobs).
"""

from tests.fakes.servicenow.records import business_seconds, fmt
from tests.fakes.servicenow.server import FakeServiceNow
from tests.fakes.servicenow.wire import Fault, Recorded

__all__ = ["FakeServiceNow", "Fault", "Recorded", "business_seconds", "fmt"]
