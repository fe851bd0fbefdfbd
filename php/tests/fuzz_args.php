<?php
// Fuzzes the argument conversion of the extension's PHP API: every public
// method of \WebSocket\Server (constructor, setters, getters, the static
// calls) and, while the server runs, of \WebSocket\Connection, called with
// random values of every PHP type: null, bools, ints (PHP_INT_MAX, negative),
// floats (NAN, INF), strings (NUL, invalid UTF-8, 1 MiB), arrays, objects,
// closures. Every call must return a value of its declared type (or false)
// or throw TypeError, ValueError or \Exception (the extension's errors);
// never crash, never log a panic.
//
//   php -d extension=polysocket.so fuzz_args.php SEED CALLS [PORTFILE]
//
// Without PORTFILE only the calls outside a running server are made. With
// it, a server on a free port of 127.0.0.1 writes its port there and, for
// every event a client causes (test_fuzz_args.py connects clients), makes
// a few random calls on that client's connection and the static calls
// (setters too: the limits they set may refuse later clients); SIGTERM
// stops it. Prints "ok N" (N calls) and exits 0, or the
// first offence and exits 1.

$seed = (int)($argv[1] ?? 1);
$budget = (int)($argv[2] ?? 2000);
$portFile = $argv[3] ?? null;
mt_srand($seed);
$calls = 0;

function fail($what)
{
    echo "FAIL: $what\n";
    exit(1);
}

class Hostile
{
    public function __toString(): string
    {
        throw new \RuntimeException('__toString');
    }
}

// Seeded, unlike random_bytes: a run is reproducible from its seed.
function bytesOf($n)
{
    $s = '';
    for ($i = 0; $i < $n; $i++) {
        $s .= chr(mt_rand(0, 255));
    }
    return $s;
}

function value($depth = 0)
{
    switch (mt_rand(0, 19)) {
        case 0: return null;
        case 1: return (bool)mt_rand(0, 1);
        case 2: return [0, 1, -1, 125, 1000, 1005, 4999, 65535, 65536, PHP_INT_MAX, PHP_INT_MIN,
                        -PHP_INT_MAX, 2147483648][mt_rand(0, 12)];
        case 3: return mt_rand(PHP_INT_MIN, PHP_INT_MAX);
        case 4: return [0.0, -0.0, 1.5, -1.0, 1e300, NAN, INF, -INF, 1e19][mt_rand(0, 8)];
        case 5: return bytesOf(mt_rand(0, 64));
        case 6: return "a\0b";
        case 7: return "\xff\xfe\xc3(\xed\xa0\x80";
        case 8: return str_repeat(mt_rand(0, 1) ? 'x' : "\u{e9}", [70000, 1 << 20][mt_rand(0, 1)]);
        case 9: return ['', 'text', 'binary', 'ping', 'close', 'info', 'error', 'warning', 'echo',
                        '*', '127.0.0.1', 'localhost', 'redis://127.0.0.1:1/0', 'http://x',
                        'room', '/', '0', '-1', '1e3', ' 5', 'redis://'][mt_rand(0, 20)];
        case 10: return $depth < 2 ? [value($depth + 1), value($depth + 1)] : [];
        case 11: return $depth < 2 ? ['cert' => value($depth + 1), 'key' => value($depth + 1),
                                      'reuse_port' => value($depth + 1)] : [];
        case 12: return new \stdClass();
        case 13: return new Hostile();
        case 14: return function () { throw new \RuntimeException('closure'); };
        case 15: return new \ArrayObject([1, 2]);
        case 16: return (string)mt_rand(-70000, 70000);
        case 17: return $depth < 2 ? [mt_rand(-3, 3) => value($depth + 1)] : [1];
        case 18: return \WebSocket\Application\StatusApplication::getInstance();
        default: return mt_rand(-2, 100000);
    }
}

function args($n)
{
    $args = [];
    for ($i = mt_rand(0, $n); $i > 0; $i--) {
        $args[] = value();
    }
    return $args;
}

// Whether $v fits the declared return type (false is always accepted).
function fits($type, $v)
{
    if ($type === null || $v === false) {
        return true;
    }
    if ($type instanceof \ReflectionUnionType) {
        foreach ($type->getTypes() as $t) {
            if (fits($t, $v)) {
                return true;
            }
        }
        return false;
    }
    if ($v === null && $type->allowsNull()) {
        return true;
    }
    switch ($type->getName()) {
        case 'mixed': return true;
        case 'void': return $v === null;
        case 'bool': return is_bool($v);
        case 'int': return is_int($v);
        case 'float': return is_float($v);
        case 'string': return is_string($v);
        case 'array': return is_array($v);
        case 'static': case 'self': return is_object($v);
        default: return is_object($v);
    }
}

// One call; documented outcomes pass, anything else ends the run.
function attempt($what, callable $call, $method = null)
{
    global $calls;
    $calls++;
    ob_start();
    try {
        $r = $call();
        if ($method !== null && !fits($method->getReturnType(), $r)) {
            ob_end_clean();
            fail("$what returned " . var_export($r, true));
        }
    } catch (\TypeError | \ValueError $e) {
        // wrong type or value: documented
    } catch (\Error $e) {
        ob_end_clean();
        fail("$what: " . get_class($e) . ': ' . $e->getMessage());
    } catch (\Exception $e) {
        // the extension's errors, and what Hostile/closures throw
    }
    $out = ob_get_clean();
    if (stripos($out, 'panic') !== false) {
        fail("$what: $out");
    }
}

function fuzzMethods($object, $class, $skip, $rounds)
{
    $methods = array_values(array_filter(
        (new \ReflectionClass($class))->getMethods(\ReflectionMethod::IS_PUBLIC),
        function ($m) use ($skip) { return !in_array($m->getName(), $skip, true) && !$m->isConstructor(); }
    ));
    for ($i = 0; $i < $rounds; $i++) {
        $m = $methods[mt_rand(0, count($methods) - 1)];
        $args = args(4);
        $target = $m->isStatic() ? null : $object;
        attempt("$class::{$m->getName()}(" . count($args) . " args)",
            function () use ($m, $target, $args) { return $m->invokeArgs($target, $args); }, $m);
    }
}

// Outside a running server: constructors and every method but run/stop.
$servers = [];
for ($i = 0; $i < $budget / 20; $i++) {
    $args = args(4);
    if (isset($args[1]) && is_int($args[1]) && $args[1] > 0 && $args[1] < 65536) {
        $args[1] = 0;  // never bind a port someone else may use
    }
    attempt('new Server(' . count($args) . ' args)', function () use ($args, &$servers) {
        $servers[] = new \WebSocket\Server(...$args);
    });
}
$server = new \WebSocket\Server('127.0.0.1', 0, false);
fuzzMethods($server, \WebSocket\Server::class, ['run', 'stop'], $budget);
unset($servers);

if ($portFile === null) {
    echo "ok $calls\n";
    exit(0);
}

class FuzzApplication extends \WebSocket\Application\Application
{
    public function onConnect($client) { $this->fuzz($client); }
    public function onDisconnect($client) { $this->fuzz($client); }
    public function onBinaryData($data, $client) { $this->fuzz($client); }

    public function onData($data, $client) { $this->fuzz($client); }

    private function fuzz($client)
    {
        global $server;
        fuzzMethods($client, get_class($client), [], mt_rand(1, 6));
        fuzzMethods($server, \WebSocket\Server::class, ['run', 'stop', 'registerApplication'], 2);
    }
}

$server = new \WebSocket\Server('127.0.0.1', 0, false);
$server->setCheckOrigin(false);
$server->setMaxClients(1000);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
$server->registerApplication('fuzz', FuzzApplication::getInstance());
file_put_contents($portFile, (string)$server->getPort());
$server->run();
echo "ok $calls\n";
