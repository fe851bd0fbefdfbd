<?php
// A cluster node for test_cluster.py. Clients on /chat join the group
// 'chat'. A client's message is a JSON command that the node performs with
// the static cluster calls, answering {"event":"result","value":...} to the
// caller; broadcasts carry {"event":"all"|"message","name":tag,"text":seq}.
//
//   php cluster.php --port P [--cluster URL] [--namespace NS] [--reuse-port]
//       [--heartbeat S --expiry S]

use WebSocket\Server;

class ClusterApp extends \WebSocket\Application\Application
{
    public function onConnect($client)
    {
        if ($client->getPath() === '/chat') {
            $client->join('chat');
        }
    }

    public function onDisconnect($client) {}

    public function onData($data, $client)
    {
        $c = json_decode($data, true);
        if (!is_array($c) || !isset($c['cmd'])) {
            return;
        }
        $result = null;
        switch ($c['cmd']) {
            case 'all':         // n broadcasts to the namespace, then "end"
            case 'group':       // the same to the group 'chat'
                for ($i = 0; $i <= $c['n']; $i++) {
                    $event = json_encode(array('event' => $c['cmd'] === 'all' ? 'all' : 'message',
                        'name' => $c['tag'], 'text' => $i < $c['n'] ? (string)$i : 'end'));
                    $c['cmd'] === 'all' ? Server::broadcastAll($event) : Server::broadcastGroup('chat', $event);
                }
                return;
            case 'id':
                $result = $client->getId();
                break;
            case 'pid':
                $result = getmypid();
                break;
            case 'sendTo':
                $result = Server::sendTo($c['id'], $c['text']);
                break;
            case 'closeTo':
                $result = Server::closeTo($c['id'], $c['code'], $c['reason']);
                break;
            case 'ping':
                $result = Server::sendTo($c['id'], 'p', 'ping');
                break;
            case 'presence':
                $result = Server::presence(isset($c['group']) ? $c['group'] : null);
                break;
            case 'nodes':
                $result = Server::nodes();
                break;
            case 'stats':
                $result = Server::clusterStats();
                break;
            case 'leave':
                $result = $client->leave('chat');
                break;
        }
        $client->send(json_encode(array('event' => 'result', 'value' => $result)));
    }
}

$o = getopt('', array('port:', 'cluster:', 'namespace:', 'reuse-port', 'heartbeat:', 'expiry:'));
$server = new Server('127.0.0.1', (int)$o['port'], false, array('reuse_port' => isset($o['reuse-port'])));
if (isset($o['cluster'])) {
    $options = array();
    foreach (array('heartbeat', 'expiry') as $k) {
        if (isset($o[$k])) {
            $options[$k] = (float)$o[$k];
        }
    }
    $server->setCluster($o['cluster'], isset($o['namespace']) ? $o['namespace'] : 'test', $options);
}
$server->setCheckOrigin(false);
$server->setMaxClients(1000);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
$server->registerApplication('*', ClusterApp::getInstance());
try {
    $server->run();
} catch (\Exception $e) {
    echo 'run() threw ' . get_class($e) . ': ' . $e->getMessage() . "\n";
    exit(3);
}
