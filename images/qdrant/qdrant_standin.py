#!/usr/bin/env python3
"""Stand-in for qdrant/qdrant: a minimal subset of Qdrant's REST API in the Python 3 standard library.

This is NOT Qdrant. It exists because our machines reach no container registry. It serves, on
0.0.0.0:6333 (QDRANT__SERVICE__HTTP_PORT overrides), the endpoints the reference stack uses, with
Qdrant-shaped JSON ({"result": ..., "status": "ok", "time": ...}; errors {"status": {"error": ...}}):

  GET    /  /readyz  /healthz  /livez
  GET    /collections                         PUT/GET/DELETE /collections/{name}
  GET    /collections/{name}/exists
  PUT    /collections/{name}/points           upsert ({"points": [...]} or {"batch": {...}})
  POST   /collections/{name}/points           retrieve by ids
  GET    /collections/{name}/points/{id}
  POST   /collections/{name}/points/delete    by ids ({"points": [...]}) or by filter
  POST   /collections/{name}/points/search    exact (brute-force) k-NN, optional filter
  POST   /collections/{name}/points/query     the newer query API (nearest-vector queries only)
  POST   /collections/{name}/points/scroll    POST /collections/{name}/points/count
  POST   /collections/{name}/snapshots        GET /collections/{name}/snapshots (list)
  GET/DELETE /collections/{name}/snapshots/{snapshot}
  POST   /collections/{name}/snapshots/upload  (multipart field `snapshot`; recovers)
  PUT    /collections/{name}/snapshots/recover ({"location": "file:///..."}; recovers)

Distances: Cosine (vectors normalised on insert, as Qdrant does), Dot, Euclid, Manhattan; named
vectors are supported. Filters: must / should / must_not with match {value | any | except | text},
range, has_id, is_empty, is_null, nested keys "a.b". Search is exact, so results are what Qdrant's
exact search would return.

Snapshots: a collection snapshot is a tar holding `collection.json` (this stand-in's own format,
not Qdrant's segments), under /qdrant/snapshots/{collection}/ (QDRANT__STORAGE__SNAPSHOTS_PATH
overrides /qdrant/snapshots), named and answered as Qdrant names and answers them. A recovery
replaces the collection named in the URL, creating it when missing, as Qdrant does.

Storage: one JSON file per collection in /qdrant/storage/collections (QDRANT__STORAGE__STORAGE_PATH
overrides the /qdrant/storage part), written atomically on every change, so data survives restarts.
A threading server; SIGTERM and SIGINT stop it at once (in-flight writes finish first).
"""

import hashlib
import io
import json
import math
import os
import re
import signal
import sys
import tarfile
import threading
import time
import urllib.parse
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("QDRANT_STANDIN_REPORTED_VERSION", "1.15.0")  # reported by GET / (clients compare it with theirs)
STANDIN_VERSION = "devstack-standin-1"
STORAGE = os.environ.get("QDRANT__STORAGE__STORAGE_PATH", "/qdrant/storage")
COLL_DIR = os.path.join(STORAGE, "collections")
SNAPSHOTS = os.environ.get("QDRANT__STORAGE__SNAPSHOTS_PATH", "/qdrant/snapshots")
PORT = int(os.environ.get("QDRANT__SERVICE__HTTP_PORT", "6333"))
HOST = os.environ.get("QDRANT__SERVICE__HOST", "0.0.0.0")
QUIET_PATHS = {"/readyz", "/healthz", "/livez", "/metrics"}
DISTANCES = {"cosine": "Cosine", "dot": "Dot", "euclid": "Euclid", "manhattan": "Manhattan"}
NAME_RE = re.compile(r"^[^/\\\x00]{1,255}$")

LOCK = threading.RLock()
COLLECTIONS = {}  # name -> {"config": {...}, "points": {key: {"id", "vector", "payload"}}, "op": int}


def log(msg):
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stdout.write(f"{ts}Z INFO qdrant_standin: {msg}\n")
    sys.stdout.flush()


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def bad(msg):
    return ApiError(400, f"Wrong input: {msg}")


def not_found_collection(name):
    return ApiError(404, f"Not found: Collection `{name}` doesn't exist!")


# ---------------------------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------------------------
def coll_path(name):
    return os.path.join(COLL_DIR, urllib.parse.quote(name, safe="") + ".json")


def save(name):
    c = COLLECTIONS[name]
    data = {"name": name, "config": c["config"], "op": c["op"], "points": list(c["points"].values())}
    path = coll_path(name)
    tmp = f"{path}.tmp.{threading.get_ident()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_all():
    os.makedirs(COLL_DIR, exist_ok=True)
    for fn in sorted(os.listdir(COLL_DIR)):
        path = os.path.join(COLL_DIR, fn)
        if ".json.tmp." in fn:
            os.unlink(path)  # left by a write that was interrupted
            continue
        if not fn.endswith(".json"):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            pts = {point_key(p["id"]): p for p in data.get("points", [])}
            COLLECTIONS[data["name"]] = {"config": data["config"], "points": pts, "op": data.get("op", 0)}
        except (OSError, ValueError, KeyError) as e:
            log(f"skipping unreadable collection file {path}: {e}")
    if COLLECTIONS:
        log(f"loaded {len(COLLECTIONS)} collection(s) from {COLL_DIR}: {', '.join(sorted(COLLECTIONS))}")


# ---------------------------------------------------------------------------------------------
# Points, vectors, distances
# ---------------------------------------------------------------------------------------------
def norm_id(pid):
    """Qdrant ids are unsigned integers or UUIDs (returned in hyphenated lowercase form)."""
    if isinstance(pid, bool):
        raise bad(f"Unable to parse point id {pid!r}")
    if isinstance(pid, int):
        if pid < 0:
            raise bad(f"point id must be an unsigned integer or a UUID, got {pid}")
        return pid
    if isinstance(pid, str):
        if pid.isdigit():
            return int(pid)
        try:
            return str(uuid.UUID(pid))
        except ValueError:
            raise bad(f"Unable to parse UUID: {pid}") from None
    raise bad(f"point id must be an unsigned integer or a UUID, got {pid!r}")


def point_key(pid):
    pid = norm_id(pid)
    return f"i:{pid}" if isinstance(pid, int) else f"u:{pid}"


def vectors_config(cfg):
    """{vector name ('' for the unnamed vector): {"size", "distance"}}"""
    v = cfg["params"]["vectors"]
    if "size" in v:
        return {"": v}
    return v


def parse_vectors_param(v):
    def one(spec):
        if not isinstance(spec, dict) or "size" not in spec or "distance" not in spec:
            raise bad("vector params need `size` and `distance`")
        size = spec["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise bad("`size` must be a positive integer")
        dist = DISTANCES.get(str(spec["distance"]).lower())
        if dist is None:
            raise bad(f"unknown distance `{spec['distance']}` (Cosine, Dot, Euclid, Manhattan)")
        out = dict(spec)
        out.update({"size": size, "distance": dist})
        return out

    if not isinstance(v, dict):
        raise bad("`vectors` must be an object")
    if "size" in v:
        return one(v)
    if not v:
        raise bad("`vectors` must not be empty")
    return {name: one(spec) for name, spec in v.items()}


def normalise(vec):
    n = math.sqrt(sum(x * x for x in vec))
    return [x / n for x in vec] if n > 0 else list(vec)


def check_vector(vec, spec, name):
    if not isinstance(vec, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec):
        raise bad(f"vector{' ' + repr(name) if name else ''} must be a list of numbers")
    if len(vec) != spec["size"]:
        raise bad(f"Vector dimension error: expected dim: {spec['size']}, got {len(vec)}")
    vec = [float(x) for x in vec]
    return normalise(vec) if spec["distance"] == "Cosine" else vec


def prepare_point_vector(cfg, vector):
    vcfg = vectors_config(cfg)
    if "" in vcfg:
        if isinstance(vector, dict):
            if set(vector) - {""}:
                raise bad(f"Not existing vector name error: {', '.join(k for k in vector if k)}")
            vector = vector.get("")
        return check_vector(vector, vcfg[""], "")
    if not isinstance(vector, dict):
        raise bad("this collection has named vectors: give `vector` as {name: [...]}")
    out = {}
    for name, vec in vector.items():
        if name not in vcfg:
            raise bad(f"Not existing vector name error: {name}")
        out[name] = check_vector(vec, vcfg[name], name)
    return out


def score(distance, a, b):
    if distance in ("Cosine", "Dot"):
        return sum(x * y for x, y in zip(a, b))
    if distance == "Euclid":
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    return sum(abs(x - y) for x, y in zip(a, b))  # Manhattan


def higher_is_better(distance):
    return distance in ("Cosine", "Dot")


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------
def payload_values(payload, key):
    """All values at a dotted key path; lists along the way are flattened ("a[].b" also accepted)."""
    cur = [payload]
    for part in key.replace("[]", "").split("."):
        nxt = []
        for c in cur:
            if isinstance(c, dict) and part in c:
                v = c[part]
                nxt.extend(v if isinstance(v, list) else [v])
            elif isinstance(c, list):
                for item in c:
                    if isinstance(item, dict) and part in item:
                        v = item[part]
                        nxt.extend(v if isinstance(v, list) else [v])
        cur = nxt
    return cur


def match_condition(cond, point):
    if "must" in cond or "should" in cond or "must_not" in cond:
        return match_filter(cond, point)
    if "filter" in cond and len(cond) == 1:
        return match_filter(cond["filter"], point)
    if "has_id" in cond:
        return point_key(point["id"]) in {point_key(i) for i in cond["has_id"]}
    if "is_empty" in cond:
        vals = [v for v in payload_values(point.get("payload") or {}, cond["is_empty"]["key"]) if v is not None]
        return not vals
    if "is_null" in cond:
        key = cond["is_null"]["key"]
        return any(v is None for v in payload_values(point.get("payload") or {}, key))
    key = cond.get("key")
    if key is None:
        raise bad(f"unsupported filter condition: {json.dumps(cond)}")
    vals = payload_values(point.get("payload") or {}, key)
    if "match" in cond:
        m = cond["match"]
        if "value" in m:
            return m["value"] in vals
        if "any" in m:
            return any(v in m["any"] for v in vals)
        if "except" in m:
            return bool(vals) and all(v not in m["except"] for v in vals)
        if "text" in m:
            return any(isinstance(v, str) and m["text"] in v for v in vals)
        raise bad(f"unsupported match: {json.dumps(m)}")
    if "range" in cond:
        r = cond["range"]

        def ok(v):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                return False
            return (("gt" not in r or r["gt"] is None or v > r["gt"])
                    and ("gte" not in r or r["gte"] is None or v >= r["gte"])
                    and ("lt" not in r or r["lt"] is None or v < r["lt"])
                    and ("lte" not in r or r["lte"] is None or v <= r["lte"]))

        return any(ok(v) for v in vals)
    if "values_count" in cond:
        n = len(vals)
        r = cond["values_count"]
        return ((r.get("gt") is None or n > r["gt"]) and (r.get("gte") is None or n >= r["gte"])
                and (r.get("lt") is None or n < r["lt"]) and (r.get("lte") is None or n <= r["lte"]))
    raise bad(f"unsupported filter condition: {json.dumps(cond)}")


def as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def match_filter(flt, point):
    if not flt:
        return True
    must = as_list(flt.get("must"))
    should = as_list(flt.get("should"))
    must_not = as_list(flt.get("must_not"))
    if not all(match_condition(c, point) for c in must):
        return False
    if should and not any(match_condition(c, point) for c in should):
        return False
    return not any(match_condition(c, point) for c in must_not)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def select_payload(payload, with_payload):
    payload = payload or {}
    if with_payload is True:
        return payload
    if with_payload in (False, None):
        return None
    if isinstance(with_payload, list):
        return {k: v for k, v in payload.items() if k in with_payload}
    if isinstance(with_payload, dict):
        if "include" in with_payload:
            return {k: v for k, v in payload.items() if k in with_payload["include"]}
        if "exclude" in with_payload:
            return {k: v for k, v in payload.items() if k not in with_payload["exclude"]}
    return payload


def select_vector(vector, with_vector):
    if not with_vector:
        return None
    if isinstance(with_vector, list) and isinstance(vector, dict):
        return {k: v for k, v in vector.items() if k in with_vector}
    return vector


def render_point(p, with_payload=True, with_vector=False, score_value=None):
    out = {"id": p["id"]}
    if score_value is not None:
        out["version"] = p.get("version", 0)
        out["score"] = score_value
    out["payload"] = select_payload(p.get("payload"), with_payload)
    out["vector"] = select_vector(p.get("vector"), with_vector)
    if score_value is None:
        out["shard_key"] = None
        out["order_value"] = None
    return out


def collection_info(c):
    n = len(c["points"])
    return {
        "status": "green",
        "optimizer_status": "ok",
        "vectors_count": n,
        "indexed_vectors_count": 0,
        "points_count": n,
        "segments_count": 1,
        "config": c["config"],
        "payload_schema": {},
    }


# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------
def get_coll(name):
    c = COLLECTIONS.get(name)
    if c is None:
        raise not_found_collection(name)
    return c


def create_collection(name, body):
    if not NAME_RE.match(name) or name in (".", ".."):
        raise bad(f"invalid collection name `{name}`")
    if "vectors" not in body:
        raise bad("missing field `vectors`")
    vectors = parse_vectors_param(body["vectors"])
    with LOCK:
        if name in COLLECTIONS:
            raise bad(f"Collection `{name}` already exists!")
        config = {
            "params": {
                "vectors": vectors,
                "shard_number": body.get("shard_number", 1),
                "replication_factor": body.get("replication_factor", 1),
                "write_consistency_factor": body.get("write_consistency_factor", 1),
                "on_disk_payload": body.get("on_disk_payload", True),
            },
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                            "max_indexing_threads": 0, "on_disk": False},
            "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                 "default_segment_number": 0, "max_segment_size": None,
                                 "memmap_threshold": None, "indexing_threshold": 20000,
                                 "flush_interval_sec": 5, "max_optimization_threads": None},
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": None,
        }
        COLLECTIONS[name] = {"config": config, "points": {}, "op": 0}
        save(name)
    log(f"created collection `{name}`")
    return True


def delete_collection(name):
    with LOCK:
        if name not in COLLECTIONS:
            return False
        del COLLECTIONS[name]
        try:
            os.unlink(coll_path(name))
        except FileNotFoundError:
            pass
    log(f"deleted collection `{name}`")
    return True


def snapshot_dir(name):
    return os.path.join(SNAPSHOTS, urllib.parse.quote(name, safe=""))


def snapshot_info(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    st = os.stat(path)
    return {"name": os.path.basename(path),
            "creation_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime)),
            "size": st.st_size, "checksum": h.hexdigest()}


def snapshot_path(name, snap):
    if "/" in snap or snap in (".", "..") or not snap.endswith(".snapshot"):
        raise bad(f"invalid snapshot name `{snap}`")
    return os.path.join(snapshot_dir(name), snap)


def create_snapshot(name):
    with LOCK:
        c = get_coll(name)
        data = json.dumps({"name": name, "config": c["config"], "op": c["op"],
                           "points": list(c["points"].values())}, separators=(",", ":")).encode()
    os.makedirs(snapshot_dir(name), exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
    snap = f"{name}-{uuid.uuid4().int % 10**16}-{stamp}.snapshot"
    path = os.path.join(snapshot_dir(name), snap)
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo("collection.json")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)
    log(f"created snapshot `{snap}` of collection `{name}`")
    return snapshot_info(path)


def list_snapshots(name):
    with LOCK:
        get_coll(name)
    d = snapshot_dir(name)
    names = sorted(n for n in os.listdir(d) if n.endswith(".snapshot")) if os.path.isdir(d) else []
    return [snapshot_info(os.path.join(d, n)) for n in names]


def read_snapshot(name, snap):
    path = snapshot_path(name, snap)
    if not os.path.isfile(path):
        raise ApiError(404, f"Not found: Snapshot {snap} of collection {name} not found")
    with open(path, "rb") as f:
        return f.read()


def delete_snapshot(name, snap):
    path = snapshot_path(name, snap)
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise ApiError(404, f"Not found: Snapshot {snap} of collection {name} not found") from None
    log(f"deleted snapshot `{snap}` of collection `{name}`")
    return True


def recover(name, raw):
    """Replaces (or creates) collection `name` with the one in snapshot bytes `raw`."""
    if not NAME_RE.match(name) or name in (".", ".."):
        raise bad(f"invalid collection name `{name}`")
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
            member = tar.extractfile("collection.json")
            data = json.loads(member.read())
        config = data["config"]
        pts = {point_key(p["id"]): p for p in data.get("points", [])}
    except (tarfile.TarError, KeyError, ValueError, AttributeError, TypeError) as e:
        raise bad(f"not a snapshot of this stand-in: {e}") from None
    with LOCK:
        COLLECTIONS[name] = {"config": config, "points": pts, "op": data.get("op", 0)}
        save(name)
    log(f"recovered collection `{name}` from a snapshot ({len(pts)} points)")
    return True


def recover_from_location(name, body):
    loc = body.get("location")
    if not isinstance(loc, str):
        raise bad("missing field `location`")
    if not loc.startswith("file://"):
        raise bad("this stand-in recovers from file:// locations only")
    path = os.path.realpath(urllib.parse.unquote(loc[len("file://"):]))
    if not path.startswith(os.path.realpath(SNAPSHOTS) + os.sep):
        raise ApiError(403, f"Forbidden: snapshot path {path} is outside the snapshots folder")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ApiError(404, f"Not found: snapshot file {path}: {e}") from None
    return recover(name, raw)


def multipart_file(content_type, raw, field):
    """The bytes of form field `field` of a multipart/form-data body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not m or not content_type.startswith("multipart/form-data"):
        raise bad("expected a multipart/form-data body")
    delim = b"--" + m.group(1).encode()
    for part in raw.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if re.search(rb'name="' + field.encode() + rb'"', head):
            return body[:-2] if body.endswith(b"\r\n") else body
    raise bad(f"no form field `{field}` in the upload")


def upsert(name, body):
    with LOCK:
        c = get_coll(name)
        cfg = c["config"]
        new = []
        if "points" in body:
            if not isinstance(body["points"], list):
                raise bad("`points` must be a list")
            for p in body["points"]:
                if not isinstance(p, dict) or "id" not in p:
                    raise bad("every point needs an `id`")
                new.append((p["id"], p.get("vector"), p.get("payload")))
        elif "batch" in body:
            b = body["batch"]
            ids = b.get("ids") or []
            vecs = b.get("vectors")
            payloads = b.get("payloads") or [None] * len(ids)
            if isinstance(vecs, dict):  # named: {name: [[...], ...]}
                vecs = [{k: v[i] for k, v in vecs.items()} for i in range(len(ids))]
            if vecs is None or len(vecs) != len(ids) or len(payloads) != len(ids):
                raise bad("batch: ids, vectors and payloads must have the same length")
            new = list(zip(ids, vecs, payloads))
        else:
            raise bad("missing field `points`")
        prepared = []
        for pid, vec, payload in new:
            if vec is None:
                raise bad(f"point {pid!r} has no `vector`")
            if payload is not None and not isinstance(payload, dict):
                raise bad("`payload` must be an object")
            prepared.append({"id": norm_id(pid), "vector": prepare_point_vector(cfg, vec),
                             "payload": payload or {}})
        c["op"] += 1
        for p in prepared:
            p["version"] = c["op"]
            c["points"][point_key(p["id"])] = p
        save(name)
        return {"operation_id": c["op"], "status": "completed"}


def delete_points(name, body):
    with LOCK:
        c = get_coll(name)
        if "points" in body:
            keys = [point_key(i) for i in body["points"]]
        elif "filter" in body:
            keys = [k for k, p in c["points"].items() if match_filter(body["filter"], p)]
        else:
            raise bad("give `points` (ids) or `filter`")
        for k in keys:
            c["points"].pop(k, None)
        c["op"] += 1
        save(name)
        return {"operation_id": c["op"], "status": "completed"}


def query_vector(c, vector, using=None):
    """-> (vector name, prepared query vector, distance)"""
    vcfg = vectors_config(c["config"])
    if isinstance(vector, dict) and "vector" in vector:  # {"name": ..., "vector": [...]}
        using, vector = vector.get("name"), vector["vector"]
    name = using if using is not None else ("" if "" in vcfg else None)
    if name is None or name not in vcfg:
        raise bad(f"Not existing vector name error: {name or '(unnamed)'}")
    spec = vcfg[name]
    return name, check_vector(vector, spec, name), spec["distance"]


def nearest(c, body, vector, using=None, limit=10, offset=0):
    name, qv, distance = query_vector(c, vector, using)
    flt = body.get("filter")
    threshold = body.get("score_threshold")
    hits = []
    for p in c["points"].values():
        if flt and not match_filter(flt, p):
            continue
        pv = p["vector"].get(name) if isinstance(p["vector"], dict) else p["vector"]
        if pv is None:
            continue
        s = score(distance, qv, pv)
        if threshold is not None:
            if higher_is_better(distance) and s < threshold:
                continue
            if not higher_is_better(distance) and s > threshold:
                continue
        hits.append((s, p))
    hits.sort(key=lambda h: h[0], reverse=higher_is_better(distance))
    hits = hits[offset:offset + limit]
    wp = body.get("with_payload", False)
    wv = body.get("with_vector", body.get("with_vectors", False))
    return [render_point(p, wp, wv, s) for s, p in hits]


def search(name, body):
    if "vector" not in body:
        raise bad("missing field `vector`")
    with LOCK:
        c = get_coll(name)
        return nearest(c, body, body["vector"], None, int(body.get("limit", 10)), int(body.get("offset") or 0))


def query(name, body):
    with LOCK:
        c = get_coll(name)
        limit = int(body.get("limit", 10))
        offset = int(body.get("offset") or 0)
        q = body.get("query")
        if isinstance(q, dict) and "nearest" in q:
            q = q["nearest"]
        if q is None:
            pts = scroll_points(c, body.get("filter"), None, offset + limit)[0][offset:]
            wp = body.get("with_payload", False)
            wv = body.get("with_vector", body.get("with_vectors", False))
            return {"points": [render_point(p, wp, wv, 1.0) for p in pts]}
        if not isinstance(q, list):
            raise bad("only nearest-vector queries are supported by this stand-in")
        return {"points": nearest(c, body, q, body.get("using"), limit, offset)}


def id_sort_key(p):
    pid = p["id"]
    return (0, pid, "") if isinstance(pid, int) else (1, 0, pid)


def scroll_points(c, flt, offset_id, limit):
    pts = sorted((p for p in c["points"].values() if match_filter(flt, p)), key=id_sort_key)
    if offset_id is not None:
        start = id_sort_key({"id": norm_id(offset_id)})
        pts = [p for p in pts if id_sort_key(p) >= start]
    return pts[:limit], (pts[limit]["id"] if len(pts) > limit else None)


def scroll(name, body):
    with LOCK:
        c = get_coll(name)
        limit = int(body.get("limit", 10))
        pts, next_id = scroll_points(c, body.get("filter"), body.get("offset"), limit)
        wp = body.get("with_payload", True)
        wv = body.get("with_vector", body.get("with_vectors", False))
        return {"points": [render_point(p, wp, wv) for p in pts], "next_page_offset": next_id}


def count(name, body):
    with LOCK:
        c = get_coll(name)
        flt = body.get("filter")
        return {"count": sum(1 for p in c["points"].values() if match_filter(flt, p))}


def retrieve(name, body):
    with LOCK:
        c = get_coll(name)
        out = []
        for pid in body.get("ids", []):
            p = c["points"].get(point_key(pid))
            if p is not None:
                out.append(render_point(p, body.get("with_payload", True),
                                        body.get("with_vector", body.get("with_vectors", False))))
        return out


def get_point(name, pid):
    with LOCK:
        c = get_coll(name)
        p = c["points"].get(point_key(pid))
        if p is None:
            raise ApiError(404, f"Not found: No point with id {pid} found")
        return render_point(p, True, True)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    server_version = "qdrant-standin/" + STANDIN_VERSION
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # access log, without the health probes' noise
        if urllib.parse.urlsplit(self.path).path not in QUIET_PATHS:
            log(f'{self.client_address[0]} "{self.requestline}" {args[1] if len(args) > 1 else ""}')

    def send_body(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj):
        self.send_body(status, json.dumps(obj, separators=(",", ":")))

    def read_body(self):
        """Read the whole body first, so that an error reply leaves a clean keep-alive connection."""
        n = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(n) if n > 0 else b""

    def read_json(self):
        raw = self.raw_body
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"Format error in JSON body: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Format error in JSON body: expected an object")
        return body

    def route(self):
        parts = urllib.parse.urlsplit(self.path)
        segs = [urllib.parse.unquote(s) for s in parts.path.split("/") if s]
        m = self.command
        if m == "HEAD":
            m = "GET"
        if m == "GET" and not segs:
            return "raw", {"title": "qdrant - vector search engine", "version": VERSION,
                           "commit": STANDIN_VERSION}
        if m == "GET" and segs in (["healthz"], ["livez"]):
            return "text", "healthz check passed"
        if m == "GET" and segs == ["readyz"]:
            return "text", "all shards are ready"
        if not segs or segs[0] != "collections":
            raise ApiError(404, f"Not found: {parts.path}")
        if len(segs) == 1 and m == "GET":
            with LOCK:
                return "ok", {"collections": [{"name": n} for n in sorted(COLLECTIONS)]}
        name = segs[1] if len(segs) > 1 else ""
        rest = segs[2:]
        if not rest:
            if m == "PUT":
                return "ok", create_collection(name, self.read_json())
            if m == "GET":
                with LOCK:
                    return "ok", collection_info(get_coll(name))
            if m == "DELETE":
                return "ok", delete_collection(name)
            if m == "PATCH":
                with LOCK:
                    get_coll(name)
                return "ok", True
        if rest and rest[0] == "snapshots":
            sub = rest[1:]
            if not sub and m == "POST":
                return "ok", create_snapshot(name)
            if not sub and m == "GET":
                return "ok", list_snapshots(name)
            if sub == ["upload"] and m == "POST":
                raw = multipart_file(self.headers.get("Content-Type"), self.raw_body, "snapshot")
                return "ok", recover(name, raw)
            if sub == ["recover"] and m == "PUT":
                return "ok", recover_from_location(name, self.read_json())
            if len(sub) == 1 and m == "GET":
                return "file", read_snapshot(name, sub[0])
            if len(sub) == 1 and m == "DELETE":
                return "ok", delete_snapshot(name, sub[0])
        if rest == ["exists"] and m == "GET":
            with LOCK:
                return "ok", {"exists": name in COLLECTIONS}
        if rest and rest[0] == "points":
            sub = rest[1:]
            if not sub and m == "PUT":
                return "ok", upsert(name, self.read_json())
            if not sub and m == "POST":
                return "ok", retrieve(name, self.read_json())
            if len(sub) == 1 and m == "GET" and sub[0] not in ("search", "query", "scroll", "count"):
                return "ok", get_point(name, sub[0])
            if sub == ["delete"] and m == "POST":
                return "ok", delete_points(name, self.read_json())
            if sub == ["search"] and m == "POST":
                return "ok", search(name, self.read_json())
            if sub == ["search", "batch"] and m == "POST":
                body = self.read_json()
                return "ok", [search(name, s) for s in body.get("searches", [])]
            if sub == ["query"] and m == "POST":
                return "ok", query(name, self.read_json())
            if sub == ["scroll"] and m == "POST":
                return "ok", scroll(name, self.read_json())
            if sub == ["count"] and m == "POST":
                return "ok", count(name, self.read_json())
        raise ApiError(404, f"Not found: {m} {parts.path} is not implemented by this qdrant stand-in")

    def handle_any(self):
        t0 = time.perf_counter()
        try:
            self.read_body()
        except ValueError:
            self.close_connection = True
            self.send_json(400, {"status": {"error": "bad Content-Length"}, "time": 0.0})
            return
        try:
            kind, value = self.route()
        except ApiError as e:
            self.send_json(e.status, {"status": {"error": e.message}, "time": time.perf_counter() - t0})
            return
        except (ValueError, TypeError, KeyError) as e:
            self.send_json(400, {"status": {"error": f"Wrong input: {e}"}, "time": time.perf_counter() - t0})
            return
        except Exception as e:  # noqa: BLE001 - report, never kill the server
            log(f"internal error on {self.command} {self.path}: {e!r}")
            self.send_json(500, {"status": {"error": f"Service internal error: {e}"},
                                 "time": time.perf_counter() - t0})
            return
        if kind == "text":
            self.send_body(200, value, "text/plain; charset=utf-8")
        elif kind == "raw":
            self.send_json(200, value)
        elif kind == "file":
            self.send_body(200, value, "application/octet-stream")
        else:
            self.send_json(HTTPStatus.OK, {"result": value, "status": "ok", "time": time.perf_counter() - t0})

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    load_all()
    server = Server((HOST, PORT), Handler)

    def stop(signum, _frame):
        log(f"received {signal.Signals(signum).name}, shutting down")
        LOCK.acquire()  # let an in-flight write finish; none can start after this
        server.server_close()
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"Qdrant stand-in (REST subset of Qdrant {VERSION}, Python {sys.version.split()[0]}) "
        f"listening on http://{HOST}:{PORT}, storage {STORAGE}")
    log("Qdrant HTTP listening on " + str(PORT))
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
