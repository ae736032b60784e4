"""Names vulture (`make lint`) cannot see used: read by a framework or written to the wire.

Each line names what uses it.
"""
# ruff: noqa: B018, F821
# pydantic calls validators by decoration; fields below are serialized into status,
# AgentTask status and the pod's termination message.
_._valid_url, _._valid_base_ref, _._fields_for_op, _._env_names, _._not_self_dependent
_._valid_integration_branch, _._commands_given, _._unique_names, _._integration_branch_apart, _._split
_._requests_within_limits, _._effective_resources_valid, _.cpu_throttled_seconds, _.sampled_at, _._agent_fields
_._valid_base, _._url_for_provider, _._valid_repository
_.observed_generation, _.changed_files_total, _.duration_seconds, _.annotations, _.last_passed
# fields of a saved conversation's messages (api/transcript.py), validated and written back as they are
_.tool_use_id, _.role
# kopf reads its OperatorSettings attributes (controller/main.py)
_.progress_storage, _.diffbase_storage, _.finalizer, _.enabled, _.standalone, _.server_timeout, _.client_timeout
# prometheus_client calls a registered collector's collect()
_.collect
# http.server reads these of a server and its request handler (confine/proxy.py)
_.daemon_threads, _.server_version, _.log_message, _.close_connection
_.do_GET, _.do_POST, _.do_PUT, _.do_DELETE, _.do_PATCH
