<?php
// php-websocket's example daemon, unchanged but for the autoloader lines:
// the status application (watch it with examples/php/status.html) and the
// demo application.
//
//   php -d extension=polysocket.so examples/php/status.php
//   then open examples/php/status.html?ws=ws://127.0.0.1:8000/status

require __DIR__ . '/DemoApplication.php';

$server = new \WebSocket\Server('127.0.0.1', 8000, false);

// server settings:
$server->setMaxClients(100);
$server->setCheckOrigin(false);     // true + setAllowedOrigin() for a page served over HTTP
$server->setAllowedOrigin('foo.lh');
$server->setMaxConnectionsPerIp(100);
$server->setMaxRequestsPerMinute(2000);

$server->registerApplication('status', \WebSocket\Application\StatusApplication::getInstance());
$server->registerApplication('demo', DemoApplication::getInstance());
$server->run();
