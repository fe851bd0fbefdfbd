<?php
// The test server: php-websocket style applications, one per behaviour
// under test, on one \WebSocket\Server. Options set the limits.
//
//   php -d extension=polysocket.so apps.php --port P [--max-clients N]
//       [--per-ip N] [--per-minute N] [--origin DOMAIN] [--budget BYTES]
//       [--metrics] [--metrics-port P] [--drain-timeout SECONDS]
//       [--cert PEM --key PEM [--passphrase P]] [--ssl (./server.pem)]
//       [--no-http2] [--http2-max-streams N] [--http2-max-pending-resets N]

class EchoApp extends \WebSocket\Application\Application
{
    public function onConnect($client) {}
    public function onDisconnect($client) {}
    public function onData($data, $client) { $client->send($data); }
    public function onBinaryData($data, $client) { $client->send($data, 'binary'); }
}

// Answers every message with what the server knows about the client.
class InfoApp extends \WebSocket\Application\Application
{
    public function onConnect($client) {}
    public function onDisconnect($client) {}
    public function onData($data, $client)
    {
        $headers = $client->getHeaders();
        $client->send(json_encode(array(
            'id' => $client->getClientId(),
            'ip' => $client->getClientIp(),
            'port' => $client->getClientPort(),
            'draft' => $client->getDraft(),
            'path' => $client->getPath(),
            'query' => $client->getQuery(),
            'origin' => $client->getOrigin(),
            'host' => $client->getHeader('host'),
            'headerCount' => count($headers),
            'subprotocol' => $client->getSubprotocol(),
            'extension' => $client->getExtension(),
            'secure' => $client->isSecure(),
            'httpVersion' => $client->getHttpVersion(),
            'http2' => $client->isHttp2(),
            'app' => get_class($client->getClientApplication()),
        )));
    }
}

// Throws on "boom"; echoes otherwise. No onBinaryData: binary gets 1003.
class BoomApp extends \WebSocket\Application\Application
{
    public function onConnect($client) {}
    public function onDisconnect($client) {}
    public function onData($data, $client)
    {
        if ($data === 'boom') {
            $this->explode($data);
        }
        if ($data === 'exit') {
            exit(7);
        }
        if ($data === 'fatal') {
            trigger_error('fatal from a callback', E_USER_ERROR);
        }
        $client->send($data);
    }
    private function explode($data)
    {
        throw new \RuntimeException("kaboom from " . $data);
    }
}

// Object identity and equality across callbacks, the original
// EchoApplication's array_search included.
class SameApp extends \WebSocket\Application\Application
{
    private $clients = array();
    private $ids = array();

    public function onConnect($client)
    {
        $this->clients[] = $client;
        $this->ids[$client->getClientId()] = spl_object_id($client);
    }
    public function onDisconnect($client)
    {
        $index = array_search($client, $this->clients);
        if ($index !== false) {
            unset($this->clients[$index]);
        }
    }
    public function onData($data, $client)
    {
        $first = reset($this->clients);
        $client->send(json_encode(array(
            'sameObject' => $this->ids[$client->getClientId()] === spl_object_id($client),
            'equalsItself' => $client == $client,
            'equalsFirst' => $client == $first,
            'identicalFirst' => $client === $first,
            'index' => array_search($client, $this->clients),
            'count' => count($this->clients),
        )));
    }
}

// "stop": the server stops from inside a callback. "send N": the client
// gets N messages. "all TEXT": TEXT to every client (Server::broadcast).
class ControlApp extends \WebSocket\Application\Application
{
    public $server;
    private $clients = array();

    public function onConnect($client) { $this->clients[$client->getClientId()] = $client; }
    public function onDisconnect($client) { unset($this->clients[$client->getClientId()]); }
    public function onData($data, $client)
    {
        if ($data === 'stop') {
            $this->server->stop();
        } elseif (strncmp($data, 'all ', 4) === 0) {
            $n = \WebSocket\Server::broadcast($this->clients, substr($data, 4));
            $client->send("sent to $n");
        } elseif ($data === 'types') {
            $client->send('ping payload', 'ping');
            $client->send('', 'pong');
            $client->send("\xff\xfe", 'binary');
            $client->send(var_export($client->send("\xff", 'text'), true));
        } elseif ($data === 'close') {
            $client->close(4000);
        } elseif ($data === 'stats') {
            $client->send(json_encode($this->server->getStats()));
        } else {
            $client->send("unknown");
        }
    }
}

// The send rules as PHP sees them: "NAME" runs attempt NAME on this client,
// "other NAME" on the client that connected first (through its mailbox),
// "gone" sends to the last client that disconnected. The answer is the
// result as JSON, or "InvalidArgumentException: message"; "last" repeats
// the previous one (for an attempt that closed the client that asked).
class RulesApp extends \WebSocket\Application\Application
{
    private $clients = array();
    private $gone;
    private $last;

    public function onConnect($client) { $this->clients[$client->getClientId()] = $client; }
    public function onDisconnect($client)
    {
        unset($this->clients[$client->getClientId()]);
        $this->gone = $client;
    }
    public function onData($data, $client)
    {
        $target = $client;
        if ($data === 'last') {
            $client->send($this->last);
            return;
        } elseif (strncmp($data, 'other ', 6) === 0) {
            $target = reset($this->clients);
            $data = substr($data, 6);
        } elseif ($data === 'gone') {
            if ($this->gone === null) {
                $client->send('no client gone yet');
                return;
            }
            $target = $this->gone;
            $data = 'text';
        }
        $close = function ($code) {
            return function ($c) use ($code) { return $c->close($code); };
        };
        $attempts = array(
            'text' => function ($c) { return $c->send('x'); },
            'binary' => function ($c) { return $c->send("\x01", 'binary'); },
            'ping' => function ($c) { return $c->send('', 'ping'); },
            'pong' => function ($c) { return $c->send('', 'pong'); },
            'ping125' => function ($c) { return $c->send(str_repeat('p', 125), 'ping'); },
            'ping200' => function ($c) { return $c->send(str_repeat('p', 200), 'ping'); },
            'pong126' => function ($c) { return $c->send(str_repeat('p', 126), 'pong'); },
            'reason124' => function ($c) { return $c->send(str_repeat('r', 124), 'close'); },
            'type' => function ($c) { return $c->send('x', 'bogus'); },
            'close-twice' => function ($c) {
                return array($c->close(1000), $c->close(1000), $c->send('after'));
            },
        );
        foreach (array(999, 1004, 1005, 1006, 1015, 5000, 70000, -1) as $code) {
            $attempts["close$code"] = $close($code);
        }
        try {
            $this->last = json_encode($attempts[$data]($target));
        } catch (\InvalidArgumentException $e) {
            $this->last = 'InvalidArgumentException: ' . $e->getMessage();
        }
        $client->send($this->last);
    }
}

// php-websocket's DemoApplication, as the status example serves it.
require __DIR__ . '/../../../examples/php/DemoApplication.php';

$o = getopt('', array('port:', 'max-clients:', 'per-ip:', 'per-minute:', 'origin:', 'budget:', 'cert:', 'key:',
    'passphrase:', 'ssl', 'metrics', 'metrics-port:', 'drain-timeout:', 'no-http2', 'http2-max-streams:',
    'http2-max-pending-resets:'));
$tls = array_intersect_key($o, array('cert' => 1, 'key' => 1, 'passphrase' => 1));
$server = new \WebSocket\Server('127.0.0.1', (int)$o['port'], isset($o['ssl']) || $tls, $tls);
$server->setMaxClients(isset($o['max-clients']) ? $o['max-clients'] : 1000);
$server->setMaxConnectionsPerIp(isset($o['per-ip']) ? (int)$o['per-ip'] : 0);
$server->setMaxRequestsPerMinute(isset($o['per-minute']) ? (int)$o['per-minute'] : 0);
if (isset($o['budget'])) {
    $server->setMaxBufferedTotal((int)$o['budget']);
}
if (isset($o['drain-timeout'])) {
    $server->setDrainTimeout((float)$o['drain-timeout']);
}
if (isset($o['no-http2'])) {
    $server->setHttp2(false);
}
if (isset($o['http2-max-streams'])) {
    $server->setHttp2MaxStreams((int)$o['http2-max-streams']);
}
if (isset($o['http2-max-pending-resets'])) {
    $server->setHttp2MaxPendingResets((int)$o['http2-max-pending-resets']);
}
if (isset($o['metrics'])) {
    $server->setMetrics(true);
}
if (isset($o['metrics-port'])) {
    $server->setMetricsPort((int)$o['metrics-port']);
}
if (isset($o['origin'])) {
    $server->setAllowedOrigin($o['origin']);
} else {
    $server->setCheckOrigin(false);
}
$control = ControlApp::getInstance();
$control->server = $server;
$server->registerApplication('status', \WebSocket\Application\StatusApplication::getInstance());
$server->registerApplication('echo', EchoApp::getInstance());
$server->registerApplication('info', InfoApp::getInstance());
$server->registerApplication('boom', BoomApp::getInstance());
$server->registerApplication('same', SameApp::getInstance());
$server->registerApplication('control', $control);
$server->registerApplication('rules', RulesApp::getInstance());
$server->registerApplication('demo', DemoApplication::getInstance());
$server->registerPage('/page.txt', "a page\n", 'text/plain');
$server->run();
echo "run() returned\n";
