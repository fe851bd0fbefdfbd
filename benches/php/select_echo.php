<?php
// A pure-PHP echo server in php-websocket's design, as a benchmark peer
// (NOT polysocket): one process, stream_socket_server + stream_select over
// every socket, an RFC 6455 handshake and frame decoding in PHP. Unlike
// php-websocket it buffers partial frames (so it echoes correctly whatever
// the segmentation) and unmasks with a whole-string XOR instead of a byte
// loop; otherwise it is the same loop, with its limits (select(2) cannot
// watch descriptors above FD_SETSIZE = 1024).
//
//   php benches/php/select_echo.php --port 9001

$o = getopt('', array('port:'));
$server = stream_socket_server('tcp://127.0.0.1:' . (int)$o['port'], $errno, $errstr);
if (!$server) {
    fwrite(STDERR, "Error creating socket: $errstr\n");
    exit(1);
}
echo "listening\n";
$clients = array();   // id => array(socket, buffer, handshaken)
$sockets = array((int)$server => $server);

function frame($opcode, $payload)
{
    $n = strlen($payload);
    if ($n < 126) {
        return chr(0x80 | $opcode) . chr($n) . $payload;
    }
    if ($n < 65536) {
        return chr(0x80 | $opcode) . chr(126) . pack('n', $n) . $payload;
    }
    return chr(0x80 | $opcode) . chr(127) . pack('J', $n) . $payload;
}

function write_all($socket, $data)
{
    while ($data !== '') {
        $w = @fwrite($socket, $data);
        if ($w === false || $w === 0) {
            return false;
        }
        $data = (string)substr($data, $w);
    }
    return true;
}

/** Decode complete frames from $buf; echo data frames. False: close. */
function handle_frames($socket, &$buf)
{
    while (strlen($buf) >= 2) {
        $b0 = ord($buf[0]);
        $b1 = ord($buf[1]);
        $opcode = $b0 & 0x0F;
        $len = $b1 & 0x7F;
        $pos = 2;
        if ($len === 126) {
            if (strlen($buf) < 4) return true;
            $len = unpack('n', substr($buf, 2, 2))[1];
            $pos = 4;
        } elseif ($len === 127) {
            if (strlen($buf) < 10) return true;
            $len = unpack('J', substr($buf, 2, 8))[1];
            $pos = 10;
        }
        if (strlen($buf) < $pos + 4 + $len) return true;
        $mask = substr($buf, $pos, 4);
        $payload = substr($buf, $pos + 4, $len);
        $buf = (string)substr($buf, $pos + 4 + $len);
        $payload = $payload ^ substr(str_repeat($mask, intdiv($len, 4) + 1), 0, $len);
        if ($opcode === 0x8) {
            write_all($socket, frame(0x8, substr($payload, 0, 2)));
            return false;
        }
        if ($opcode === 0x9) {
            write_all($socket, frame(0xA, $payload));
        } elseif ($opcode === 0x1 || $opcode === 0x2) {
            if (!write_all($socket, frame($opcode, $payload))) return false;
        }
    }
    return true;
}

while (true) {
    $read = $sockets;
    $write = $except = null;
    if (@stream_select($read, $write, $except, 0, 5000) === false) {
        continue;
    }
    foreach ($read as $socket) {
        if ($socket === $server) {
            $c = @stream_socket_accept($server, 0);
            if ($c) {
                stream_set_blocking($c, true);
                $clients[(int)$c] = array('buf' => '', 'ws' => false);
                $sockets[(int)$c] = $c;
            }
            continue;
        }
        $id = (int)$socket;
        $data = @fread($socket, 65536);
        if ($data === '' || $data === false) {
            fclose($socket);
            unset($clients[$id], $sockets[$id]);
            continue;
        }
        $clients[$id]['buf'] .= $data;
        if (!$clients[$id]['ws']) {
            $end = strpos($clients[$id]['buf'], "\r\n\r\n");
            if ($end === false) continue;
            $head = substr($clients[$id]['buf'], 0, $end);
            $clients[$id]['buf'] = (string)substr($clients[$id]['buf'], $end + 4);
            if (!preg_match('/Sec-WebSocket-Key: (.*)\r\n/i', $head . "\r\n", $m)) {
                fclose($socket);
                unset($clients[$id], $sockets[$id]);
                continue;
            }
            $accept = base64_encode(sha1(trim($m[1]) . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11', true));
            write_all($socket, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                . "Connection: Upgrade\r\nSec-WebSocket-Accept: $accept\r\n\r\n");
            $clients[$id]['ws'] = true;
        }
        if (!handle_frames($socket, $clients[$id]['buf'])) {
            fclose($socket);
            unset($clients[$id], $sockets[$id]);
        }
    }
}
