<?php
// A chat node: serves the chat page at / and the room at /chat; every
// message goes to everyone in the room on every node of the cluster (Rust's
// core/examples/chat_node.rs, Python's `python -m polysocket chat` and this
// one share a room on one Redis). JSON events, as theirs:
// {"event": "join" | "message" | "leave", "name": ..., "text": ...}.
//
//   redis-server --port 6379 --save '' --appendonly no &
//   php -d extension=polysocket.so examples/php/chat_node.php \
//       --port 9004 --cluster redis://127.0.0.1:6379 --namespace chat
//
// --reuse-port lets several of these share one port. Without --cluster the
// node runs alone.

class ChatNode extends \WebSocket\Application\Application
{
    const ROOM = 'chat';
    private $names = array();

    public function onConnect($client)
    {
        parse_str($client->getQuery(), $query);
        $name = isset($query['name']) && is_string($query['name']) ? chars($query['name'], 32) : '';
        if ($name === '') {
            $name = 'guest-' . $client->getId();
        }
        $this->names[$client->getId()] = $name;
        $client->join(self::ROOM);
        $this->tell(array('event' => 'join', 'name' => $name));
    }

    public function onData($data, $client)
    {
        $text = trim($data);
        if ($text === '' || !isset($this->names[$client->getId()])) {
            return;
        }
        $this->tell(array('event' => 'message', 'name' => $this->names[$client->getId()],
            'text' => chars($text, 4096)));
    }

    public function onDisconnect($client)
    {
        $id = $client->getId();
        if (isset($this->names[$id])) {
            $this->tell(array('event' => 'leave', 'name' => $this->names[$id]));
            unset($this->names[$id]);
        }
    }

    /** Tell the whole room, on every node. */
    private function tell(array $event)
    {
        \WebSocket\Server::broadcastGroup(self::ROOM,
            json_encode($event, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES));
    }
}

/** The first $n characters of UTF-8 $s (without needing mbstring). */
function chars($s, $n)
{
    return preg_match('/^.{0,' . $n . '}/su', $s, $m) ? $m[0] : '';
}

$o = getopt('', array('host:', 'port:', 'cluster:', 'namespace:', 'reuse-port'));
$server = new \WebSocket\Server(isset($o['host']) ? $o['host'] : '127.0.0.1',
    isset($o['port']) ? (int)$o['port'] : 9004, false,
    array('reuse_port' => isset($o['reuse-port'])));
if (isset($o['cluster'])) {
    $server->setCluster($o['cluster'], isset($o['namespace']) ? $o['namespace'] : 'chat');
}
$server->setMaxClients(10000);
$server->setCheckOrigin(false);
$server->setMaxConnectionsPerIp(0);
$server->setMaxRequestsPerMinute(0);
$server->registerPage('/', file_get_contents(__DIR__ . '/../python/chat.html'));
$server->registerApplication('chat', ChatNode::getInstance());
$server->run();
