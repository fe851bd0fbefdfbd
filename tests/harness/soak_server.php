<?php
// The PHP face of the soak run (scripts/soak.sh): a daemon whose application
// echoes every message and answers the soak client's commands, as
// core/examples/soak_server.rs does (see there for the commands). It keeps
// its clients by id, as daemons do, so that their objects' lifetime is
// part of what the soak watches.
//
//   php -d extension=target/release/libpolysocket_php.so tests/harness/soak_server.php --port P
//
// `soak:stats` reports what only the process itself can see:
// memory_get_usage() (and with true: what the Zend allocator holds) and
// the clients the application holds.

class SoakApplication extends \WebSocket\Application\Application
{
    private $clients = array();

    public function onConnect($client)
    {
        $this->clients[$client->getId()] = $client;
        parse_str($client->getQuery(), $query);
        if (isset($query['group']) && $query['group'] !== '') {
            $client->join($query['group']);
        }
    }

    public function onDisconnect($client)
    {
        unset($this->clients[$client->getId()]);
    }

    public function onData($data, $client)
    {
        if (strncmp($data, 'soak:', 5) !== 0) {
            $client->send($data);
            return;
        }
        $words = explode(' ', substr($data, 5), 3);
        if ($words[0] === 'stats') {
            $client->send('soak:stats ' . json_encode(array(
                'connections' => count($this->clients),
                'php_memory' => memory_get_usage(),
                'php_memory_real' => memory_get_usage(true),
            )));
        } elseif ($words[0] === 'bcast' && count($words) === 3) {
            \WebSocket\Server::broadcastGroup($words[1], "soak:b {$words[1]} {$words[2]}");
        } elseif ($words[0] === 'flood' && count($words) === 3) {
            $message = str_repeat('f', (int)$words[2]);
            for ($i = 0; $i < (int)$words[1]; $i++) {
                if (!$client->send($message)) {
                    break; // cut off: what the soak client waits for
                }
            }
        } else {
            $client->close(1003);
        }
    }

    public function onBinaryData($data, $client)
    {
        $client->send($data, 'binary');
    }
}

$options = getopt('', array('host:', 'port:'));
$server = new \WebSocket\Server(isset($options['host']) ? $options['host'] : '127.0.0.1',
    isset($options['port']) ? (int)$options['port'] : 8000, false);
$server->setMaxClients(1000000);
$server->setCheckOrigin(false);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
$server->registerApplication('*', SoakApplication::getInstance());
$server->run();
