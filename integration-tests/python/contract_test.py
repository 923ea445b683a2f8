#!/usr/bin/env python3
"""Contract test of a running Juy Calendar server, from an independent client.

The Rust harness starts the server on a fresh database, seeds it and runs

    <venv>/bin/python integration-tests/python/contract_test.py --fixture F

where F is a JSON file naming the server, the proto directory, bearer tokens
and the seeded resources (see `load_fixture`). Python stubs are generated from
the protos at run time into a temporary directory; nothing generated is kept.
One test also calls the server with no stubs at all, from descriptors fetched
by reflection, the way grpcurl does.

Prints one line per test and then `N passed, M failed`; exits 0 only when
M is 0. Needs only the packages of requirements.txt beside this file.
"""

import argparse
import dataclasses
import datetime
import importlib
import importlib.resources
import json
import pathlib
import sys
import tempfile
import traceback
import types

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, field_mask_pb2, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

TIMEOUT = 10  # seconds: the deadline of every call
MAX_PAGES = 1000  # a pager that runs longer than this never ends
SETTINGS_NAME = "users/me/calendarSettings"
CALENDAR_SYNC = "juy.calendar.v1.CalendarSync"
AVAILABILITY = "juy.calendar.v1.Availability"
EXPECTED_SERVICES = (CALENDAR_SYNC, AVAILABILITY, "juy.calendar.v1.Admin", "grpc.health.v1.Health")
FIXTURE_KEYS = (
    "target", "proto_dir", "user_token", "other_user_token", "admin_token",
    "range_start", "range_end", "expected_event_names", "expected_event_titles",
    "calendars", "connections", "other_user_calendar", "writable_calendar",
    "read_only_only_calendar",
)


class CheckFailed(Exception):
    """A check of the contract did not hold."""


@dataclasses.dataclass
class Context:
    """What every test gets: the fixture, a channel and the generated code."""

    fixture: dict
    channel: grpc.Channel
    pb: types.SimpleNamespace  # the generated *_pb2 modules
    calendar_sync: object  # CalendarSyncStub
    availability: object  # AvailabilityStub
    admin: object  # AdminStub


# ---------------------------------------------------------------- plumbing


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def bearer(token):
    """Call metadata carrying `token`; no metadata at all for None."""
    return () if token is None else (("authorization", f"Bearer {token}"),)


def set_timestamp(field, rfc3339):
    """Sets a google.protobuf.Timestamp field (generated or dynamic)."""
    instant = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    since_epoch = instant - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    field.seconds = since_epoch.days * 86400 + since_epoch.seconds
    field.nanos = since_epoch.microseconds * 1000


def expect_status(code, rpc, request, token):
    """Calls `rpc` expecting it to fail with `code`; returns the error."""
    try:
        rpc(request, metadata=bearer(token), timeout=TIMEOUT)
    except grpc.RpcError as error:
        check(error.code() == code,
              f"expected {code.name}, got {error.code().name}: {error.details()}")
        return error
    raise CheckFailed(f"expected {code.name}, got OK")


def bad_request_fields(error):
    """The fields named by the BadRequest details in an error's trailers."""
    status = rpc_status.from_call(error)
    check(status is not None, "no grpc-status-details-bin in the error's trailers")
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend(violation.field for violation in bad_request.field_violations)
    check(fields, f"no google.rpc.BadRequest field violation in {status}")
    return fields


def expect_bad_field(field, rpc, request, token):
    error = expect_status(grpc.StatusCode.INVALID_ARGUMENT, rpc, request, token)
    fields = bad_request_fields(error)
    check(field in fields, f"BadRequest names {fields}, not {field!r}")


def collect_pages(rpc, make_request, items_field, token, page_size=0):
    """Every item of a paged List call, checking each page's size."""
    items, page_token = [], ""
    for _ in range(MAX_PAGES):
        request = make_request(page_size=page_size, page_token=page_token)
        response = rpc(request, metadata=bearer(token), timeout=TIMEOUT)
        page = list(getattr(response, items_field))
        check(not page_size or len(page) <= page_size,
              f"a page of {len(page)} {items_field} for page_size {page_size}")
        items.extend(page)
        page_token = response.next_page_token
        if not page_token:
            return items
    raise CheckFailed(f"paging {items_field} did not end after {MAX_PAGES} pages")


def events_request(ctx, start=None, end=None, **fields):
    request = ctx.pb.calendar_sync.ListEventsRequest(**fields)
    set_timestamp(request.start_time, start or ctx.fixture["range_start"])
    set_timestamp(request.end_time, end or ctx.fixture["range_end"])
    return request


def list_events(ctx, token, page_size=0):
    return collect_pages(ctx.calendar_sync.ListEvents,
                         lambda **paging: events_request(ctx, **paging),
                         "events", token, page_size)


def list_calendars(ctx):
    return collect_pages(ctx.calendar_sync.ListCalendars,
                         ctx.pb.calendar_sync.ListCalendarsRequest,
                         "calendars", ctx.fixture["user_token"])


def get_settings(ctx):
    request = ctx.pb.calendar_sync.GetCalendarSettingsRequest(name=SETTINGS_NAME)
    response = ctx.calendar_sync.GetCalendarSettings(
        request, metadata=bearer(ctx.fixture["user_token"]), timeout=TIMEOUT)
    return response.settings


def settings_snapshot(settings):
    """Settings as comparable values, whatever order the server lists them in."""
    modes = sorted((m.calendar, m.mode) for m in settings.calendar_modes)
    channels = sorted((c.provider, c.push, c.email, c.sms)
                      for c in settings.notification_channels)
    return modes, channels


def mode_of(settings, calendar):
    modes = {m.calendar: m.mode for m in settings.calendar_modes}
    check(calendar in modes, f"settings list no mode for {calendar}")
    return modes[calendar]


def mode_update(ctx, calendars, mode):
    """An UpdateCalendarSettingsRequest giving `calendars` the `mode`."""
    pb = ctx.pb
    settings = pb.resources.CalendarSettings(
        name=SETTINGS_NAME,
        calendar_modes=[pb.resources.CalendarModeSetting(calendar=c, mode=mode)
                        for c in calendars])
    return pb.calendar_sync.UpdateCalendarSettingsRequest(
        settings=settings, update_mask=field_mask_pb2.FieldMask(paths=["calendar_modes"]))


def reflection_call(ctx, request):
    """One reflection request on its own stream; fails on an error answer."""
    stub = reflection_pb2_grpc.ServerReflectionStub(ctx.channel)
    responses = list(stub.ServerReflectionInfo(
        iter([request]), metadata=bearer(ctx.fixture["user_token"]), timeout=TIMEOUT))
    check(len(responses) == 1, f"{len(responses)} reflection answers to one request")
    response = responses[0]
    if response.HasField("error_response"):
        error = response.error_response
        raise CheckFailed(f"reflection error {error.error_code}: {error.error_message}"
                          f" for {request}")
    return response


def fetch_file_descriptors(ctx, symbol):
    """The file defining `symbol` and every file it imports, by reflection."""
    files, requested = {}, set()
    pending = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]
    while pending:
        request = pending.pop()
        try:
            response = reflection_call(ctx, request)
        except CheckFailed:
            # Servers may leave out the well-known types, as every protobuf
            # runtime has them built in (grpcurl relies on that too).
            name = request.file_by_filename
            if not name.startswith("google/protobuf/"):
                raise
            files[name] = builtin_file_descriptor(name)
            continue
        for blob in response.file_descriptor_response.file_descriptor_proto:
            file = descriptor_pb2.FileDescriptorProto.FromString(blob)
            files.setdefault(file.name, file)
        for file in list(files.values()):
            for dependency in file.dependency:
                if dependency not in files and dependency not in requested:
                    requested.add(dependency)
                    pending.append(
                        reflection_pb2.ServerReflectionRequest(file_by_filename=dependency))
    return files


def builtin_file_descriptor(name):
    file = descriptor_pb2.FileDescriptorProto()
    descriptor_pool.Default().FindFileByName(name).CopyToProto(file)
    return file


def build_pool(files):
    """A fresh descriptor pool holding `files`, each after its imports."""
    pool, added = descriptor_pool.DescriptorPool(), set()

    def add(name):
        if name in added:
            return
        added.add(name)
        for dependency in files[name].dependency:
            add(dependency)
        pool.AddSerializedFile(files[name].SerializeToString())

    for name in files:
        add(name)
    return pool


# ------------------------------------------------------------------- tests


def test_reflection_lists_the_services(ctx):
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    listed = {s.name for s in reflection_call(ctx, request).list_services_response.service}
    missing = [name for name in EXPECTED_SERVICES if name not in listed]
    check(not missing, f"reflection lists {sorted(listed)}, missing {missing}")


def test_list_events_without_stubs_through_reflection(ctx):
    pool = build_pool(fetch_file_descriptors(ctx, CALENDAR_SYNC))
    service = pool.FindServiceByName(CALENDAR_SYNC)
    method = service.methods_by_name["ListEvents"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = request_class(page_size=1000)
    set_timestamp(request.start_time, ctx.fixture["range_start"])
    set_timestamp(request.end_time, ctx.fixture["range_end"])
    rpc = ctx.channel.unary_unary(
        f"/{service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString)
    response = rpc(request, metadata=bearer(ctx.fixture["user_token"]), timeout=TIMEOUT)
    names = [event.name for event in response.events]
    expected = ctx.fixture["expected_event_names"]
    check(names == expected, f"events {names}, expected {expected}")


def test_health_check_serves_without_a_token(ctx):
    stub = health_pb2_grpc.HealthStub(ctx.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    serving = health_pb2.HealthCheckResponse.SERVING
    check(response.status == serving,
          f"health {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}")


def test_list_events_pages_in_order(ctx):
    events = list_events(ctx, ctx.fixture["user_token"], page_size=2)
    names = [event.name for event in events]
    titles = [event.title for event in events]
    expected_names = ctx.fixture["expected_event_names"]
    expected_titles = ctx.fixture["expected_event_titles"]
    check(names == expected_names, f"events {names}, expected {expected_names}")
    check(titles == expected_titles, f"titles {titles}, expected {expected_titles}")
    calendars = set(ctx.fixture["calendars"])
    strays = [(e.name, e.calendar) for e in events if e.calendar not in calendars]
    check(not strays, f"events on calendars outside the fixture: {strays}")


def test_list_connections_and_calendars(ctx):
    connections = collect_pages(ctx.calendar_sync.ListConnections,
                                ctx.pb.calendar_sync.ListConnectionsRequest,
                                "connections", ctx.fixture["user_token"])
    names = sorted(c.name for c in connections)
    expected = sorted(ctx.fixture["connections"])
    check(names == expected, f"connections {names}, expected {expected}")
    calendars = [c.name for c in list_calendars(ctx)]
    expected = sorted(ctx.fixture["calendars"])
    check(len(calendars) == len(set(calendars)), f"calendars listed twice: {calendars}")
    check(sorted(calendars) == expected, f"calendars {sorted(calendars)}, expected {expected}")


def test_authentication_and_isolation(ctx):
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    expect_status(unauthenticated, ctx.calendar_sync.ListEvents, events_request(ctx), None)
    expect_status(unauthenticated, ctx.calendar_sync.ListEvents, events_request(ctx),
                  "not-a-jwt")
    others = {event.name for event in list_events(ctx, ctx.fixture["other_user_token"])}
    leaked = sorted(others & set(ctx.fixture["expected_event_names"]))
    check(not leaked, f"the other user sees {leaked}")


def test_invalid_arguments_name_the_field(ctx):
    token, list_rpc = ctx.fixture["user_token"], ctx.calendar_sync.ListEvents
    reversed_range = events_request(ctx, start=ctx.fixture["range_end"],
                                    end=ctx.fixture["range_start"])
    expect_bad_field("end_time", list_rpc, reversed_range, token)
    expect_bad_field("page_size", list_rpc, events_request(ctx, page_size=5000), token)
    expect_bad_field("page_token", list_rpc,
                     events_request(ctx, page_token="%%not-a-page-token%%"), token)


def test_settings_updates_are_all_or_nothing(ctx):
    pb, fixture, token = ctx.pb, ctx.fixture, ctx.fixture["user_token"]
    update = ctx.calendar_sync.UpdateCalendarSettings
    write = pb.resources.CALENDAR_MODE_WRITE
    writable = fixture["writable_calendar"]

    before = get_settings(ctx)
    check(mode_of(before, writable) != write,
          f"{writable} is already in WRITE mode: the fixture must seed it READ_ONLY")

    foreign = mode_update(ctx, [fixture["other_user_calendar"]], write)
    expect_status(grpc.StatusCode.NOT_FOUND, update, foreign, token)
    after = get_settings(ctx)
    check(settings_snapshot(after) == settings_snapshot(before),
          f"a refused update changed the settings: {before} -> {after}")

    mixed = mode_update(ctx, [writable, fixture["read_only_only_calendar"]], write)
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, update, mixed, token)
    check(mode_of(get_settings(ctx), writable) == mode_of(before, writable),
          f"a refused update changed the mode of {writable}")

    response = update(mode_update(ctx, [writable], write),
                      metadata=bearer(token), timeout=TIMEOUT)
    check(mode_of(response.settings, writable) == write,
          f"the update answered mode {mode_of(response.settings, writable)} for {writable}")
    listed = {c.name: c.mode for c in list_calendars(ctx)}
    check(listed.get(writable) == write,
          f"ListCalendars shows mode {listed.get(writable)} for {writable}")

    google = pb.resources.PROVIDER_GOOGLE
    channels = pb.resources.NotificationChannels(provider=google, push=False, email=True,
                                                 sms=False)
    request = pb.calendar_sync.UpdateCalendarSettingsRequest(
        settings=pb.resources.CalendarSettings(name=SETTINGS_NAME,
                                               notification_channels=[channels]),
        update_mask=field_mask_pb2.FieldMask(paths=["notification_channels"]))
    response = update(request, metadata=bearer(token), timeout=TIMEOUT)
    wanted = (google, False, True, False)
    for source, settings in (("the update", response.settings),
                             ("GetCalendarSettings", get_settings(ctx))):
        google_channels = [c for c in settings_snapshot(settings)[1] if c[0] == google]
        check(google_channels == [wanted],
              f"{source} shows Google channels {google_channels}, expected [{wanted}]")
        check(mode_of(settings, writable) == write,
              f"{source}: updating channels changed the mode of {writable}")


def free_busy_request(ctx, users):
    request = ctx.pb.availability.QueryFreeBusyRequest(users=users)
    set_timestamp(request.start_time, ctx.fixture["range_start"])
    set_timestamp(request.end_time, ctx.fixture["range_end"])
    return request


def test_free_busy_explains_only_the_callers_own_time(ctx):
    request = free_busy_request(ctx, ["users/me"])
    mine = ctx.availability.QueryFreeBusy(request, metadata=bearer(ctx.fixture["user_token"]),
                                          timeout=TIMEOUT)
    check(len(mine.users) == 1 and mine.users[0].user == "users/alice", f"users {mine.users}")
    explained = {name for interval in mine.users[0].busy for name in interval.events}
    expected = set(ctx.fixture["expected_event_names"])
    check(explained and explained <= expected,
          f"own intervals name {sorted(explained)}, not a non-empty subset of the seeded events")
    # Bob asking about Alice: the same intervals, and nothing but intervals.
    theirs = ctx.availability.QueryFreeBusy(free_busy_request(ctx, ["users/alice"]),
                                            metadata=bearer(ctx.fixture["other_user_token"]),
                                            timeout=TIMEOUT)
    spans = [(i.start_time.seconds, i.end_time.seconds, i.kind) for i in theirs.users[0].busy]
    own_spans = [(i.start_time.seconds, i.end_time.seconds, i.kind) for i in mine.users[0].busy]
    check(spans == own_spans, "another user sees other intervals than the owner")
    leaked = [i for i in theirs.users[0].busy if i.events or i.meetings]
    check(not leaked, f"another user sees what caused the intervals: {leaked}")
    answer = theirs.SerializeToString()
    titles = [t for t in ctx.fixture["expected_event_titles"] if t and t.encode() in answer]
    check(not titles, f"titles in another user's answer: {titles}")


def test_find_slots_names_bad_fields(ctx):
    request = ctx.pb.availability.FindSlotsRequest(
        invitees=[ctx.pb.availability.SlotInvitee(user="users/bob"),
                  ctx.pb.availability.SlotInvitee(user="not-a-user")])
    request.duration.seconds = 60
    set_timestamp(request.start_time, ctx.fixture["range_start"])
    set_timestamp(request.end_time, ctx.fixture["range_end"])
    try:
        ctx.availability.FindSlots(request, metadata=bearer(ctx.fixture["user_token"]), timeout=TIMEOUT)
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"code {error.code().name}")
        fields = bad_request_fields(error)
        check({"duration", "invitees[1].user"} <= set(fields), f"violations name {fields}")
        return
    raise CheckFailed("FindSlots accepted a 1-minute meeting and a malformed user")


def test_a_conflicting_meeting_is_refused_with_precondition_details(ctx):
    token = ctx.fixture["user_token"]
    start = datetime.datetime.fromisoformat(ctx.fixture["range_start"].replace("Z", "+00:00"))
    mine = ctx.availability.QueryFreeBusy(free_busy_request(ctx, ["users/me"]),
                                          metadata=bearer(token), timeout=TIMEOUT)
    busy = [i for i in mine.users[0].busy if i.kind == ctx.pb.availability.BUSY_KIND_BUSY]
    check(busy, "the seeded user has busy time")
    meeting = ctx.pb.resources.Meeting(title="Contract check", invitees=["users/bob"])
    meeting.start_time.CopyFrom(busy[0].start_time)
    meeting.end_time.CopyFrom(busy[0].end_time)
    try:
        ctx.calendar_sync.CreateMeeting(ctx.pb.calendar_sync.CreateMeetingRequest(meeting=meeting),
                                        metadata=bearer(token), timeout=TIMEOUT)
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.FAILED_PRECONDITION, f"code {error.code().name}")
        status = rpc_status.from_call(error)
        subjects = []
        for detail in status.details:
            failure = error_details_pb2.PreconditionFailure()
            if detail.Unpack(failure):
                subjects += [v.subject for v in failure.violations]
        check("users/alice" in subjects, f"precondition violations name {subjects}")
        return
    raise CheckFailed(f"a meeting over busy time from {start} was created")


def test_admin_list_connections_needs_the_admin_role(ctx):
    admin_list = ctx.admin.ListConnections
    request_class = ctx.pb.admin.AdminListConnectionsRequest
    expect_status(grpc.StatusCode.PERMISSION_DENIED, admin_list, request_class(),
                  ctx.fixture["user_token"])
    listed = {c.name for c in collect_pages(admin_list, request_class, "connections",
                                            ctx.fixture["admin_token"])}
    missing = sorted(set(ctx.fixture["connections"]) - listed)
    check(not missing, f"Admin.ListConnections misses {missing}")


def test_export_my_data_streams_one_json_document(ctx):
    chunks = ctx.calendar_sync.ExportMyData(
        ctx.pb.calendar_sync.ExportMyDataRequest(), metadata=bearer(ctx.fixture["user_token"]),
        timeout=TIMEOUT)
    document = json.loads(b"".join(chunk.chunk for chunk in chunks).decode("utf-8"))
    check(document.get("format") == "juy.calendar.export/v1", f"export format {document.get('format')}")
    check(document.get("complete") is True, "the export does not end complete")
    names = {event["name"] for event in document["events"]}
    missing = sorted(set(ctx.fixture["expected_event_names"]) - names)
    check(not missing, f"the export misses events {missing}")
    titles = {event.get("title") for event in document["events"]}
    check(set(ctx.fixture["expected_event_titles"]) <= titles, "the export lacks decrypted titles")
    text = json.dumps(document)
    for token in (ctx.fixture["user_token"], ctx.fixture["admin_token"]):
        check(token not in text, "a bearer token is in the export")
    connections = {c["name"] for c in document["connections"]}
    check(set(ctx.fixture["connections"]) <= connections, "the export lacks connections")


def test_the_admin_reads_the_audit_trail_and_exports_connections(ctx):
    list_audit = ctx.admin.ListAuditEvents
    request_class = ctx.pb.admin.ListAuditEventsRequest
    expect_status(grpc.StatusCode.PERMISSION_DENIED, list_audit, request_class(),
                  ctx.fixture["user_token"])
    exports = list_audit(request_class(action="data.export", page_size=100),
                         metadata=bearer(ctx.fixture["admin_token"]), timeout=TIMEOUT).audit_events
    check(any(e.result == "OK" and e.subject_user_id == e.actor for e in exports),
          f"no audit entry for the export: {exports}")
    entries = collect_pages(list_audit, request_class, "audit_events", ctx.fixture["admin_token"],
                            page_size=50)
    check(any(e.action == "admin.audit.list" and e.result == "PERMISSION_DENIED" for e in entries),
          "the refused audit read is not in the trail")
    text = str(entries)
    for title in ctx.fixture["expected_event_titles"]:
        check(title not in text, "an event title is in the audit trail")
    batches = ctx.admin.ExportConnections(ctx.pb.admin.ExportConnectionsRequest(),
                                          metadata=bearer(ctx.fixture["admin_token"]), timeout=TIMEOUT)
    exported = {c.name for batch in batches for c in batch.connections}
    missing = sorted(set(ctx.fixture["connections"]) - exported)
    check(not missing, f"Admin.ExportConnections misses {missing}")


TESTS = (
    test_reflection_lists_the_services,
    test_list_events_without_stubs_through_reflection,
    test_health_check_serves_without_a_token,
    test_list_events_pages_in_order,
    test_list_connections_and_calendars,
    test_authentication_and_isolation,
    test_invalid_arguments_name_the_field,
    test_settings_updates_are_all_or_nothing,
    test_free_busy_explains_only_the_callers_own_time,
    test_find_slots_names_bad_fields,
    test_a_conflicting_meeting_is_refused_with_precondition_details,
    test_admin_list_connections_needs_the_admin_role,
    test_export_my_data_streams_one_json_document,
    test_the_admin_reads_the_audit_trail_and_exports_connections,
)


# ------------------------------------------------------------------ set-up


def load_fixture(path):
    fixture = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    missing = [key for key in FIXTURE_KEYS if key not in fixture]
    if missing:
        raise ValueError(f"fixture {path} lacks {missing}")
    return fixture


def generate_stubs(proto_dir, out_dir):
    """Runs protoc (from grpcio-tools) over our protos into `out_dir`.

    google/rpc is left out: googleapis-common-protos provides it.
    """
    from grpc_tools import protoc  # imported late: it is slow and set-up only

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    protos = sorted(str(path.relative_to(proto_dir))
                    for pattern in ("juy/calendar/v1/*.proto", "google/api/*.proto")
                    for path in proto_dir.glob(pattern))
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_dir}")
    args = ["grpc_tools.protoc", f"--proto_path={proto_dir}", f"--proto_path={well_known}",
            f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {protos}")


def load_stubs(out_dir):
    """Imports the generated modules; `out_dir` goes first on sys.path so its
    google/api modules win over googleapis-common-protos' copies."""
    sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()
    package = "juy.calendar.v1"
    return types.SimpleNamespace(
        resources=importlib.import_module(f"{package}.resources_pb2"),
        calendar_sync=importlib.import_module(f"{package}.calendar_sync_pb2"),
        calendar_sync_grpc=importlib.import_module(f"{package}.calendar_sync_pb2_grpc"),
        availability=importlib.import_module(f"{package}.availability_pb2"),
        availability_grpc=importlib.import_module(f"{package}.availability_pb2_grpc"),
        admin=importlib.import_module(f"{package}.admin_pb2"),
        admin_grpc=importlib.import_module(f"{package}.admin_pb2_grpc"),
    )


def open_channel(fixture):
    """Plaintext unless the fixture names a CA (`ca_cert`, a PEM file)."""
    ca_cert = fixture.get("ca_cert")
    if not ca_cert:
        return grpc.insecure_channel(fixture["target"])
    credentials = grpc.ssl_channel_credentials(pathlib.Path(ca_cert).read_bytes())
    return grpc.secure_channel(fixture["target"], credentials)


def run_test(test, ctx):
    """Runs one test; prints its line and returns whether it passed."""
    try:
        test(ctx)
    except CheckFailed as failure:
        reason = str(failure)
    except grpc.RpcError as error:
        reason = f"unexpected {error.code().name}: {error.details()}"
    except Exception as error:  # a bug in the test or a malformed answer
        traceback.print_exc()
        reason = f"{type(error).__name__}: {error}"
    else:
        print(f"ok   {test.__name__}", flush=True)
        return True
    print(f"FAIL {test.__name__}: {reason}", flush=True)
    return False


def run_all(fixture, out_dir):
    generate_stubs(pathlib.Path(fixture["proto_dir"]), out_dir)
    pb = load_stubs(out_dir)
    with open_channel(fixture) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"no server at {fixture['target']} within {TIMEOUT} s") from None
        ctx = Context(fixture=fixture, channel=channel, pb=pb,
                      calendar_sync=pb.calendar_sync_grpc.CalendarSyncStub(channel),
                      availability=pb.availability_grpc.AvailabilityStub(channel),
                      admin=pb.admin_grpc.AdminStub(channel))
        return [run_test(test, ctx) for test in TESTS]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", required=True, help="the harness's fixture.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="juy-contract-stubs-") as out_dir:
        try:
            results = run_all(load_fixture(args.fixture), pathlib.Path(out_dir))
        except Exception as error:  # no test could run: count them all failed
            traceback.print_exc()
            print(f"set-up failed: {type(error).__name__}: {error}", flush=True)
            results = [False] * len(TESTS)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
