<?php
// The daemon of scripts/leak-check.sh: run under valgrind memcheck
// (USE_ZEND_ALLOC=0), driven by tests/harness/leak_php.py through every
// event kind and error path the extension has, it ends by `exit()` inside
// a callback, as a daemon can, so that path's clean-up is checked too.
//
//   php -n -d extension=polysocket.so php/tests/leak_daemon.php --port P

// Echo, plus commands that exercise the rest of the API from a callback.
class LeakEcho extends \WebSocket\Application\Application
{
    private $clients = array();

    public function onConnect($client)
    {
        $this->clients[$client->getId()] = $client;
        $client->join('room');
    }

    public function onDisconnect($client)
    {
        unset($this->clients[$client->getId()]);
        $client->leave('room');
    }

    public function onData($data, $client)
    {
        if (strncmp($data, 'close:', 6) === 0) {
            $client->close((int)substr($data, 6));
            return;
        }
        switch ($data) {
            case 'info':
                $client->send(json_encode(array(
                    $client->getClientId(), $client->getClientIp(), $client->getClientPort(),
                    $client->getDraft(), $client->getPath(), $client->getQuery(),
                    $client->getHeaders(), $client->getHeader('host'), $client->getOrigin(),
                    $client->getSubprotocol(), $client->getExtension(), $client->isSecure(),
                    get_class($client->getClientApplication()),
                )));
                return;
            case 'unknown':
                // Server-side send and close to ids that do not exist: false.
                $sent = \WebSocket\Server::sendTo(987654321, 'nobody');
                $closed = \WebSocket\Server::closeTo(987654321, 1000, 'nobody');
                $client->send(var_export(array($sent, $closed), true));
                return;
            case 'broadcast':
                \WebSocket\Server::broadcastAll('to all');
                \WebSocket\Server::broadcastGroup('room', 'to room');
                \WebSocket\Server::broadcast(array_values($this->clients), 'to list', 'binary');
                $client->send('presence ' . \WebSocket\Server::presence('room'));
                return;
            case 'closeto':
                \WebSocket\Server::closeTo($client->getId(), 4001, 'server closes you');
                return;
            case 'refused':
                // Calls the extension refuses with an exception, caught here.
                $caught = 0;
                try { $client->send('x', 'nonsense'); } catch (\InvalidArgumentException $e) { $caught++; }
                try { $client->close(5000); } catch (\InvalidArgumentException $e) { $caught++; }
                $client->send('ping from the server', 'ping');
                $client->send("caught $caught");
                return;
        }
        $client->send($data);
    }

    public function onBinaryData($data, $client)
    {
        $client->send($data, 'binary');
    }
}

// Throws where asked; 'exit' ends the daemon from inside a callback.
class LeakBoom extends \WebSocket\Application\Application
{
    public function onConnect($client)
    {
        if ($client->getQuery() === 'connect') {
            throw new \RuntimeException('thrown in onConnect');
        }
    }

    public function onDisconnect($client)
    {
        if ($client->getQuery() === 'disconnect') {
            throw new \LogicException('thrown in onDisconnect');
        }
    }

    public function onData($data, $client)
    {
        if ($data === 'exit') {
            exit(0);
        }
        throw new \RuntimeException('thrown in onData: ' . $data);
    }
    // No onBinaryData: binary messages are refused with 1003.
}

$options = getopt('', array('port:'));
$server = new \WebSocket\Server('127.0.0.1', (int)$options['port']);
$server->setMaxClients(1000);
$server->setCheckOrigin(false);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
// A small budget, so that one large message crosses it (1013).
$server->setMaxBufferedTotal(1 << 20);
$server->registerApplication('echo', LeakEcho::getInstance());
$server->registerApplication('boom', LeakBoom::getInstance());
$server->run();
