<?php
// A php-websocket server script whose StatusApplication is the user's own
// copy (servers/lib), reached the way php-websocket's server.php reaches
// its library: --mode autoload registers an autoloader over lib/ (after the
// extension's fallback loader, as a script must), --mode require requires
// the file first, --mode none uses the extension's fallback.
//
//   php -d extension=polysocket.so user_status.php --port P --mode M

$o = getopt('', array('port:', 'mode:'));
$lib = __DIR__ . '/lib/';
if ($o['mode'] === 'autoload') {
    spl_autoload_register(function ($class) use ($lib) {
        $file = $lib . str_replace('\\', '/', $class) . '.php';
        if (is_file($file)) {
            require $file;
        }
    });
} elseif ($o['mode'] === 'require') {
    require $lib . 'WebSocket/Application/StatusApplication.php';
}

class EchoApp extends \WebSocket\Application\Application
{
    public function onConnect($client) {}
    public function onDisconnect($client) {}
    public function onData($data, $client) { $client->send($data); }
}

$server = new \WebSocket\Server('127.0.0.1', (int)$o['port'], false);
$server->setCheckOrigin(false);
$status = \WebSocket\Application\StatusApplication::getInstance();
// Where each class came from: "[class] WebSocket\...\X from FILE".
foreach (array(get_class($status), get_parent_class($status)) as $class) {
    $server->log($class . ' from ' . (new ReflectionClass($class))->getFileName(), 'class');
}
$server->registerApplication('status', $status);
$server->registerApplication('echo', EchoApp::getInstance());
$server->run();
