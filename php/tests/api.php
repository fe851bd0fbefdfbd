<?php
// The PHP-level API without sockets: php-websocket's setters' validation
// and return values, the Application base class, phpinfo. Prints "ok N"
// and exits 0, or the first failure and exits 1.

$checks = 0;
function check($cond, $what)
{
    global $checks;
    $checks++;
    if (!$cond) {
        echo "FAIL: $what\n";
        exit(1);
    }
}

// Untyped overrides, as php-websocket code declares them, must compile.
class Untyped extends \WebSocket\Application\Application
{
    public function onConnect($connection) {}
    public function onDisconnect($connection) {}
    public function onData($data, $client) { return 'anything'; }
    public function encode($a, $d) { return $this->_encodeData($a, $d); }
    public function decode($d) { return $this->_decodeData($d); }
}
class Other extends Untyped {}

check(extension_loaded('polysocket'), 'extension loaded');
$s = new \WebSocket\Server('127.0.0.1', 0, false);
check($s->getPort() > 0, 'port 0 binds a free port');
check($s->getMaxClients() === 30 && $s->getCheckOrigin() === true
    && $s->getMaxConnectionsPerIp() === 5 && $s->getMaxRequestsPerMinute() === 50, 'php-websocket defaults');
check($s->setMaxClients(0) === false && $s->setMaxClients('abc') === false && $s->getMaxClients() === 30, 'setMaxClients rejects (int) 0');
check($s->setMaxClients('100') === true && $s->getMaxClients() === 100, 'setMaxClients casts');
check($s->setCheckOrigin(1) === false && $s->setCheckOrigin('yes') === false, 'setCheckOrigin wants a bool');
check($s->setCheckOrigin(false) === true && $s->getCheckOrigin() === false, 'setCheckOrigin');
check($s->setMaxConnectionsPerIp('5') === false && $s->setMaxConnectionsPerIp(7) === true && $s->getMaxConnectionsPerIp() === 7, 'setMaxConnectionsPerIp wants an int');
check($s->setMaxRequestsPerMinute(1.5) === false && $s->setMaxRequestsPerMinute(100) === true, 'setMaxRequestsPerMinute wants an int');
check($s->getMaxBufferedTotal() === 268435456, 'buffer budget default: php.ini polysocket.max_buffered_total');
check($s->setMaxBufferedTotal('1') === false && $s->setMaxBufferedTotal(-1) === false
    && $s->setMaxBufferedTotal(1 << 20) === true && $s->getMaxBufferedTotal() === 1 << 20
    && $s->setMaxBufferedTotal(0) === true, 'setMaxBufferedTotal wants an int >= 0');
check($s->getTrustedProxies() === array() && $s->getProxyProtocol() === false, 'no trusted proxy by default');
check($s->setTrustedProxies(array('10.0.0.0/8', '127.0.0.1')) === true
    && $s->getTrustedProxies() === array('10.0.0.0/8', '127.0.0.1/32'), 'setTrustedProxies');
try {
    $s->setTrustedProxies(array('127.0.0.1', '10.0.0.0/33'));
    check(false, 'a bad trusted proxy throws');
} catch (\InvalidArgumentException $e) {
    check(strpos($e->getMessage(), '10.0.0.0/33') !== false, 'the exception names the bad entry: ' . $e->getMessage());
}
check($s->getTrustedProxies() === array('10.0.0.0/8', '127.0.0.1/32'), 'a refused list changes nothing');
check($s->setProxyProtocol('yes') === false && $s->setProxyProtocol(true) === true
    && $s->getProxyProtocol() === true && $s->setProxyProtocol(false) === true, 'setProxyProtocol wants a bool');
check($s->setAllowedOrigin('') === false && $s->setAllowedOrigin('http://') === false, 'empty origin refused');
check($s->setAllowedOrigin('http://www.example.com/x/y') === true, 'setAllowedOrigin');
check($s->getAllowedOrigins() === array('example.com'), 'origin normalised');
check($s->checkOrigin('https://www.example.com') && $s->checkOrigin('http://example.com/')
    && !$s->checkOrigin('http://evil.com'), 'checkOrigin');
check($s->getApplication('none') === false && $s->getApplication('') === false, 'getApplication false');
$app = Untyped::getInstance();
check($app === Untyped::getInstance(), 'getInstance is a singleton');
check(Other::getInstance() !== $app && get_class(Other::getInstance()) === 'Other', 'one instance per subclass');
$s->registerApplication('demo', $app);
check($s->getApplication('demo') === $app, 'getApplication');
check($app->encode('echo', array('x' => 1)) === '{"action":"echo","data":{"x":1}}', '_encodeData');
check($app->encode('', 1) === false, '_encodeData without action');
check($app->decode('{"action":"a","data":2}') === array('action' => 'a', 'data' => 2), '_decodeData');
check($app->decode('{"action":"a"}') === false && $app->decode('nope') === false, '_decodeData refuses');
$threw = false;
try {
    $s->setCertificate('/nonexistent.pem');
} catch (\Exception $e) {
    $threw = strpos($e->getMessage(), '/nonexistent.pem') !== false;
}
check($threw, 'setCertificate loads the files at once, naming the one that failed');

// The status application gets the limits when registered.
$status = \WebSocket\Application\StatusApplication::getInstance();
$s->registerApplication('status', $status);
$info = (function () { return $this->_serverInfo; })->call($status);
check($info === array('maxClients' => 100, 'maxConnectionsPerIp' => 7, 'maxRequetsPerMinute' => 100), 'setServerInfo');

foreach (array(
    function () { new \WebSocket\Application\StatusApplication(); },
    function () { return new \WebSocket\Connection(); },
    function () { new \WebSocket\Server('127.0.0.1', 70000); },
) as $i => $f) {
    $threw = false;
    try {
        $f();
    } catch (\Throwable $e) {
        $threw = true;
    }
    check($threw, "construction $i refused");
}
$threw = false;
try {
    new \WebSocket\Server('127.0.0.1', $s->getPort());
} catch (\Exception $e) {
    $threw = strpos($e->getMessage(), 'Error creating socket') !== false;
}
check($threw, 'a taken port throws');

ob_start();
$s->log('hello', 'warn');
$line = ob_get_clean();
check(preg_match('/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[warn\] hello\n$/', $line) === 1, "log format: $line");

// The cluster settings: php.ini defaults, setCluster(), setReusePort().
check($s->getCluster() === null && $s->getReusePort() === false, 'no cluster, no reuse_port by default');
check($s->setCluster('redis://127.0.0.1:1', 'chat', array('heartbeat' => 0.5, 'expiry' => 2, 'queue' => 10)) === true
    && $s->getCluster() === array('url' => 'redis://127.0.0.1:1', 'namespace' => 'chat', 'heartbeat' => 0.5,
        'expiry' => 2.0, 'queue' => 10), 'setCluster');
check($s->setCluster('redis://h') === true && $s->getCluster()['namespace'] === 'polysocket', 'namespace from php.ini');
foreach (array(array('heartbeat' => 0), array('expiry' => 'soon'), array('queue' => -1), array('bogus' => 1)) as $bad) {
    $threw = '';
    try {
        $s->setCluster('redis://h', 'chat', $bad);
    } catch (\InvalidArgumentException $e) {
        $threw = $e->getMessage();
    }
    check(strpos($threw, key($bad)) !== false, 'setCluster refuses option ' . key($bad) . ": $threw");
}
check($s->setCluster(null) === true && $s->getCluster() === null, 'setCluster(null) leaves');
check($s->setReusePort('yes') === false && $s->setReusePort(true) === true && $s->getReusePort() === true,
    'setReusePort wants a bool');
$other = new \WebSocket\Server('127.0.0.1', $s->getPort(), false, array('reuse_port' => true));
check($other->getPort() === $s->getPort(), 'two servers share a port with reuse_port');
$threw = false;
try {
    $s->registerPage('/', 'x', "text/html\r\nX-Injected: 1");
} catch (\InvalidArgumentException $e) {
    $threw = true;
}
check($threw, 'registerPage refuses a content type with a line break');
foreach (array('broadcastAll' => array('x'), 'presence' => array(), 'nodes' => array(), 'clusterStats' => array(),
    'sendTo' => array(1, 'x'), 'closeTo' => array(1), 'broadcastGroup' => array('g', 'x')) as $method => $args) {
    $threw = '';
    try {
        call_user_func_array(array('\WebSocket\Server', $method), $args);
    } catch (\Exception $e) {
        $threw = $e->getMessage();
    }
    check(strpos($threw, "$method(): no server is running") !== false, "$method without a server: $threw");
}

ob_start();
phpinfo(INFO_MODULES);
$info = ob_get_clean();
check(strpos($info, 'polysocket support => enabled') !== false && strpos($info, 'hixie-76') !== false, 'phpinfo');
check(strpos($info, 'cluster => Redis pub/sub') !== false
    && strpos($info, 'polysocket.cluster_url => (none: single node)') !== false
    && strpos($info, 'polysocket.cluster_namespace => polysocket') !== false
    && strpos($info, 'polysocket.reuse_port => 0') !== false, "phpinfo cluster rows: $info");
check(ini_get('polysocket.workers') === false && ini_get('polysocket.verbose') === '0'
    && ini_get('polysocket.cluster_url') === '' && ini_get('polysocket.cluster_namespace') === 'polysocket'
    && ini_get('polysocket.reuse_port') === '0', 'ini settings');

echo "ok $checks\n";
