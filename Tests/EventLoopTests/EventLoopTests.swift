import CLibUV
import Foundation
import Testing
@testable import EventLoop

@Suite("Event loop")
struct EventLoopTests {
    @Test("timers fire, every close callback runs, and the loop closes clean")
    func timers() throws {
        let loop = try Loop()
        var fired = 0
        var closed = 0
        for i in 0..<100 {
            let t = try EventLoop.Timer(loop: loop)
            t.start(timeoutMs: UInt64(i % 5)) {
                fired += 1
                t.close { closed += 1 }
            }
        }
        loop.run()
        #expect(fired == 100)
        #expect(closed == 100)
        #expect(loop.close() == 0)
    }

    @Test("posts from other threads run on the loop thread, in order per thread")
    func posts() throws {
        let loop = try Loop()
        let keepAlive = try EventLoop.Timer(loop: loop)
        final class Box: @unchecked Sendable { var seen: [Int] = []; var onLoop = true }
        let box = Box()
        let alive = LoopBound(keepAlive, loop: loop)
        let threads = (0..<4).map { t in
            Thread {
                for i in 0..<250 {
                    loop.post {
                        box.onLoop = box.onLoop && loop.isOnLoop
                        box.seen.append(t * 1000 + i)
                        if box.seen.count == 1000 { alive.value.close() }
                    }
                }
            }
        }
        keepAlive.start(timeoutMs: 10_000) { Issue.record("timed out"); keepAlive.close() }
        threads.forEach { $0.start() }
        loop.run()
        #expect(box.seen.count == 1000)
        #expect(box.onLoop)
        for t in 0..<4 {
            let mine = box.seen.filter { $0 / 1000 == t }
            #expect(mine == mine.sorted())
        }
        #expect(loop.close() == 0)
    }

    @Test("the compute pool runs work off the loop and completes on it; cancelled work is skipped")
    func computePool() throws {
        let loop = try Loop()
        let pool = ComputePool(loop: loop, threads: 2)
        var results: [Int] = []
        var skipped = 0
        var completionsOnLoop = true
        for i in 0..<50 {
            pool.submit(work: { _ in
                precondition(!Thread.isMainThread || true)
                return i * i
            }, completion: { r in
                completionsOnLoop = completionsOnLoop && loop.isOnLoop
                results.append(r!)
            })
        }
        // Block both threads, then queue a job and cancel it before it can start.
        let gate = CancellationToken()
        for _ in 0..<2 {
            pool.submit(work: { _ in while !gate.isCancelled { usleep(1000) }; return 0 }, completion: { _ in })
        }
        let token = CancellationToken()
        pool.submit(token: token, work: { _ in -1 }, completion: { r in if r == nil { skipped += 1 } })
        token.cancel()
        gate.cancel()
        loop.run()  // returns when no work is outstanding
        #expect(results.sorted() == (0..<50).map { $0 * $0 })
        #expect(skipped == 1)
        #expect(completionsOnLoop)
        pool.shutdown()
        #expect(loop.close() == 0)
    }

    @Test("a listener accepts, streams echo, and 2,000 connections leave no handle behind")
    func listenerAndStreams() throws {
        let loop = try Loop()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("evl-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("s.sock").path
        let listener = try PipeListener(loop: loop)
        try listener.bind(path: path)
        var accepted = 0
        var closedServerSide = 0
        var echoed = 0
        try listener.listen { result in
            guard case .success(let conn) = result else { return }
            accepted += 1
            #expect(conn.peerCredentials()?.uid == getuid())
            try? conn.startReading { ev in
                switch ev {
                case .data(let bytes): conn.write(Array(bytes)); echoed += bytes.count
                case .eof, .error: conn.close { closedServerSide += 1 }
                }
            }
        }
        let n = 2000
        let boundListener = LoopBound(listener, loop: loop)
        let client = Thread {
            for i in 0..<n {
                let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
                var addr = sockaddr_un()
                addr.sun_family = sa_family_t(AF_UNIX)
                withUnsafeMutableBytes(of: &addr.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
                let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
                precondition(r == 0)
                if i % 10 == 0 {
                    var msg: [UInt8] = Array("hello".utf8)
                    _ = send(fd, &msg, 5, 0)
                    var buf = [UInt8](repeating: 0, count: 5)
                    _ = recv(fd, &buf, 5, Int32(MSG_WAITALL))
                    precondition(buf == msg)
                }
                Glibc.close(fd)
            }
            loop.post { boundListener.value.close() }
        }
        client.start()
        loop.run()
        #expect(accepted == n)
        #expect(closedServerSide == n)
        #expect(echoed == 5 * n / 10)
        #expect(loop.close() == 0)
    }

    @Test("a write larger than the socket buffer is queued, counted, and drained")
    func queuedWrites() throws {
        let loop = try Loop()
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let pipe = try EventLoop.Pipe(loop: loop, fd: fds[0])
        let big = [UInt8](repeating: 7, count: 8 << 20)
        let peer = fds[1]
        pipe.write(big)
        #expect(pipe.queuedBytes > 0)
        let reader = Thread {
            var total = 0
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            while total < big.count {
                let n = recv(peer, &buf, buf.count, 0)
                if n <= 0 { break }
                total += n
            }
            Glibc.close(peer)
        }
        reader.start()
        var drained = false
        pipe.whenDrained {
            drained = true
            pipe.close()
        }
        loop.run()
        #expect(drained)
        #expect(pipe.queuedBytes == 0)
        #expect(loop.close() == 0)
    }

    @Test("a post after the loop closed is dropped, from the loop's thread or another (a late log line)")
    func postAfterClose() throws {
        let loop = try Loop()
        #expect(loop.close() == 0)
        loop.post { Issue.record("a job posted after close ran") }
        let t = Thread { loop.post { Issue.record("a job posted after close ran") } }
        t.start()
        usleep(50_000)
    }
}
