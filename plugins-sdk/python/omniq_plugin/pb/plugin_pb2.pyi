from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Cancel(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ["functions", "plugin_name", "plugin_version", "supports_batch", "supports_session"]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_NAME_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_BATCH_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_SESSION_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionSpec]
    plugin_name: str
    plugin_version: str
    supports_batch: bool
    supports_session: bool
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionSpec, _Mapping]]] = ..., plugin_name: _Optional[str] = ..., plugin_version: _Optional[str] = ..., supports_session: bool = ..., supports_batch: bool = ...) -> None: ...

class ExecuteEvent(_message.Message):
    __slots__ = ["failure", "progress", "result"]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    failure: Failure
    progress: Progress
    result: Result
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ["attempt", "deadline_unix_nano", "function", "headers", "payload", "retry_count", "task_id"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    deadline_unix_nano: int
    function: str
    headers: _containers.ScalarMap[str, str]
    payload: bytes
    retry_count: int
    task_id: str
    def __init__(self, task_id: _Optional[str] = ..., function: _Optional[str] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., attempt: _Optional[int] = ..., retry_count: _Optional[int] = ..., deadline_unix_nano: _Optional[int] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ["error_type", "message", "permanent", "retry_after_ms", "traceback"]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    error_type: str
    message: str
    permanent: bool
    retry_after_ms: int
    traceback: str
    def __init__(self, error_type: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ..., permanent: bool = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class FunctionSpec(_message.Message):
    __slots__ = ["concurrency", "default_timeout_ms", "description", "has_max_retries", "max_retries", "name"]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HAS_MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    concurrency: int
    default_timeout_ms: int
    description: str
    has_max_retries: bool
    max_retries: int
    name: str
    def __init__(self, name: _Optional[str] = ..., default_timeout_ms: _Optional[int] = ..., max_retries: _Optional[int] = ..., has_max_retries: bool = ..., concurrency: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ["fraction", "message"]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    message: str
    def __init__(self, fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ["output"]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: bytes
    def __init__(self, output: _Optional[bytes] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ["batch", "call_id", "event"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    batch: _containers.RepeatedCompositeFieldContainer[SessionEvent]
    call_id: int
    event: ExecuteEvent
    def __init__(self, call_id: _Optional[int] = ..., event: _Optional[_Union[ExecuteEvent, _Mapping]] = ..., batch: _Optional[_Iterable[_Union[SessionEvent, _Mapping]]] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ["batch", "call_id", "cancel", "execute"]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    batch: _containers.RepeatedCompositeFieldContainer[SessionRequest]
    call_id: int
    cancel: Cancel
    execute: ExecuteRequest
    def __init__(self, call_id: _Optional[int] = ..., execute: _Optional[_Union[ExecuteRequest, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., batch: _Optional[_Iterable[_Union[SessionRequest, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ["running_task_ids"]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, running_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...
