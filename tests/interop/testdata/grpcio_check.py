# A Python grpcio (gRPC C-core) client of concord, with messages built from
# the proto's descriptors, no generated code. Not run by CI (it needs
# python3-grpcio and python3-protobuf: apt-get install python3-grpcio
# python3-protobuf). By hand, against a running `concord server`:
#
#   buf build -o /tmp/interop-concord.binpb       # in a checkout of concord
#   /usr/bin/python3 tests/interop/testdata/grpcio_check.py 127.0.0.1:7070 [TOKEN [DESCRIPTORS]]
#
# It exits non-zero (an AssertionError) when an answer is not the one
# docs/locks.md and docs/errors.md describe.
import sys, threading, time, queue, grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
fds = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[3] if len(sys.argv) > 3 else '/tmp/interop-concord.binpb', 'rb').read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)
fac = message_factory.MessageFactory(pool)
M = lambda n: fac.GetPrototype(pool.FindMessageTypeByName('concord.v1.' + n))
addr, token = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
ch = grpc.insecure_channel(addr)
md = [('authorization', 'Bearer ' + token)] if token else None
ser = lambda m: m.SerializeToString()
def unary(method, req, resp, meta=md):
    return ch.unary_unary('/concord.v1.' + method, request_serializer=ser, response_deserializer=M(resp).FromString)(req, metadata=meta, timeout=10)
def sstream(method, req, resp):
    return ch.unary_stream('/concord.v1.' + method, request_serializer=ser, response_deserializer=M(resp).FromString)(req, metadata=md, timeout=30)

def fields(b):
    # minimal protobuf wire reader: yields (field, value) for varint and bytes fields
    i = 0
    while i < len(b):
        def varint():
            nonlocal i
            v, s = 0, 0
            while True:
                c = b[i]; i += 1; v |= (c & 0x7f) << s; s += 7
                if c < 0x80: return v
        k = varint(); f, wt = k >> 3, k & 7
        if wt == 0: yield f, varint()
        elif wt == 2:
            n = varint(); yield f, b[i:i+n]; i += n
        else: raise ValueError(wt)

def reason(e):
    # google.rpc.Status in grpc-status-details-bin: details (3) are Any (type_url 1, value 2)
    for k, v in e.trailing_metadata() or ():
        if k == 'grpc-status-details-bin':
            for f, any_ in fields(v):
                if f == 3:
                    a = dict(fields(any_))
                    info = M('ErrorInfo').FromString(a[2])
                    return a[1].decode(), info.reason
    return None

rev = unary('KV/Put', M('PutRequest')(key=b'py', value=b'hello'), 'PutResponse').header.revision
assert rev > 0
print('put rev', rev)
r = unary('KV/Range', M('RangeRequest')(key=b'py'), 'RangeResponse')
assert [(kv.key, kv.value) for kv in r.kvs] == [(b'py', b'hello')], r
print('range', [(kv.key, kv.value) for kv in r.kvs])
for name, method, req, resp, code, want in [
        ('empty key', 'KV/Put', M('PutRequest')(value=b'x'), 'PutResponse', grpc.StatusCode.INVALID_ARGUMENT, 'EMPTY_KEY'),
        ('not held', 'Lock/Release', M('ReleaseRequest')(names=['nope'], session=1, owner='o'), 'ReleaseResponse', grpc.StatusCode.FAILED_PRECONDITION, 'LOCK_NOT_HELD')]:
    try:
        unary(method, req, resp)
        raise AssertionError(name + ': no error')
    except grpc.RpcError as e:
        assert e.code() == code and reason(e) == ('type.googleapis.com/concord.v1.ErrorInfo', want), (name, e.code(), reason(e))
        print(name, e.code(), reason(e))
if token:
    try:
        unary('KV/Put', M('PutRequest')(key=b'k', value=b'v'), 'PutResponse', meta=None)
        raise AssertionError('no token: no error')
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED and reason(e)[1] == 'UNAUTHENTICATED', (e.code(), reason(e))
        print('no token', e.code(), reason(e))

s1 = unary('Session/Create', M('CreateSessionRequest')(ttl_ms=3000, name='py1'), 'CreateSessionResponse').id
s2 = unary('Session/Create', M('CreateSessionRequest')(ttl_ms=30000, name='py2'), 'CreateSessionResponse').id
# keep s1 alive on the bidi stream for 3 TTLs
reqs = queue.Queue()
def gen():
    while True:
        m = reqs.get()
        if m is None: return
        yield m
ka = ch.stream_stream('/concord.v1.Session/KeepAlive', request_serializer=ser, response_deserializer=M('KeepAliveResponse').FromString)(gen(), metadata=md)
t0 = time.time(); n = 0
while time.time() - t0 < 9:
    reqs.put(M('KeepAliveRequest')(id=s1)); r = next(ka); assert r.id == s1 and not r.expired; n += 1
    time.sleep(0.5)
reqs.put(None)
alive = unary('Session/Get', M('GetSessionRequest')(id=s1), 'GetSessionResponse').session.id == s1
assert alive
print('keepalives', n, 'session alive after 9s of TTL 3s:', alive)

claim = [M('LockClaim')(name='pylock', kind=1)]
a = sstream('Lock/Acquire', M('AcquireRequest')(claims=claim, session=s1, owner='a', wait=True), 'AcquireResponse')
ga = next(a); assert ga.state == 1, ga; print('a', ga.state, ga.token)
b = sstream('Lock/Acquire', M('AcquireRequest')(claims=claim, session=s2, owner='b', wait=True), 'AcquireResponse')
qb = next(b); assert qb.state == 2, qb; print('b', qb.state, 'waiter', qb.waiter)
print('inspect holders', [(h.owner, h.token) for h in unary('Lock/Inspect', M('InspectLockRequest')(name='pylock'), 'InspectLockResponse').lock.holders])
unary('Lock/Release', M('ReleaseRequest')(names=['pylock'], session=s1, owner='a'), 'ReleaseResponse')
gb = next(b); assert gb.state == 1 and gb.token > ga.token, gb; print('b', gb.state, gb.token, 'token grew:', gb.token > ga.token)
assert list(a) == []
print('a stream ends: True')
b.cancel()
print('ok')
