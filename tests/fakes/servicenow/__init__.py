"""A fake ServiceNow instance (Table API) that behaves like the real one, for tests and benchmarks.

- tables ``incident`` (and the other task tables), ``sys_audit``, ``sys_journal_field``,
  ``sys_choice``, ``sys_user``, ``sys_user_group``; every value a string, references stored as
  sys_ids and written as ``{"link": ".../api/now/table/<table>/<id>", "value": "<id>"}`` (or
  ``""``); dates ``YYYY-MM-DD HH:MM:SS`` in UTC; a clock (``now``) that ticks on every change;
- ``GET /api/now[/v1|/v2]/table/{table}[/{sys_id}]`` with ``sysparm_query`` (encoded queries with
  ServiceNow's precedence, see ``query``), ``sysparm_limit`` (default and cap ``max_limit``),
  ``sysparm_offset``, ``sysparm_fields`` (dot-walks too), ``sysparm_display_value=false|true|all``,
  ``sysparm_exclude_reference_link``, ``sysparm_no_count``, ``sysparm_suppress_pagination_header``
  and name=value filters; ``X-Total-Count`` and ``Link`` (first, prev, next, last); v1 answers 404
  for an empty result, v2 and unversioned an empty list; 400 for an invalid parameter value;
- records changed through ``modify()`` follow the out-of-box rules and write ``sys_audit`` rows
  (see ``records``); ``add_journal()`` writes ``sys_journal_field``; ``set_choice()`` changes the
  instance's choice lists (seeded with the documented defaults);
- HTTP Basic auth and OAuth 2 (``POST /oauth_token.do``, password and refresh_token grants,
  Bearer tokens that expire after ``token_lifetime`` seconds); 401 with ServiceNow's body;
- ``audit_readable`` / ``journal_readable`` False: 403 ACL errors on those tables; ``hidden``
  sys_ids are counted but left out of pages (the limit applies before ACLs, as on the real API);
- ``rate_limit`` per ``rate_window_seconds`` (real time): ``X-RateLimit-Limit``, ``-Remaining``,
  ``-Reset`` and ``-Rule`` on every response, then 429 with ``Retry-After``;
- knobs ``fail_next``, ``rate_limit_next``, ``slow_next``, ``invalid_json_next``,
  ``html_error_next`` (each may target a path and skip matching requests first), and
  ``on_request`` (a hook run before each answer: change records mid-sync, kill a process).

Run it as a server process (the benchmark does)::

    python -m tests.fakes.servicenow --port 0 --incidents 100000 --audit-rows 1000000 --seed 1
"""

from tests.fakes.servicenow.records import business_seconds, fmt
from tests.fakes.servicenow.server import FakeServiceNow
from tests.fakes.servicenow.wire import Fault, Recorded

__all__ = ["FakeServiceNow", "Fault", "Recorded", "business_seconds", "fmt"]
