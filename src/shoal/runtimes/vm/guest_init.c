/*
 * shoal's PID 1 inside a VM: starts the service's command and talks to the host on a serial line.
 *
 * Not part of the daemon: shoal.runtimes.vm.baking compiles this file once (gcc -static, cached by
 * the source's hash). The same binary plays two parts:
 *  - stage one, as /init in the initramfs (the kernel runs it; it has every driver built in): it
 *    mounts the kernel's file systems, the root disk (/dev/vda) and the service disk (/dev/vdb at
 *    /srv), sets up the network slirp hands out (10.0.2.15/24 via 10.0.2.2: no DHCP to wait for)
 *    and switches into the root file system, executing /srv/shoal/init;
 *  - the guest init proper, as /srv/shoal/init (a copy on every service disk), described below.
 * It is C rather than Python because under TCG (no hardware KVM) every code path a process runs is
 * translated anew: a Python init cost about 1.7 s of a cold boot and 0.3 s of each snapshot
 * restore's clock and entropy sync, and a busybox initramfs script 0.4-0.5 s of each cold boot;
 * this one costs milliseconds.
 *
 * The flow inside the guest:
 *  1. mount /run and /tmp; read /srv/shoal/argv and /srv/shoal/env (NUL-separated), and
 *     /srv/shoal/port, /srv/shoal/grace (one number each); the workdir is /srv/app;
 *  2. start the command there with its env (PORT included), output to the serial console (which
 *     the host appends to the instance's log), in its own session;
 *  3. say "ready" once the port accepts connections inside the guest (the snapshot of a fresh boot
 *     is taken at that moment);
 *  4. answer the host on the control line (/dev/ttyS1), one text line per message:
 *     "warm <path>" (the snapshot maker: one GET to the service, answer "warmed"),
 *     "freeze" (the snapshot maker, last: SIGSTOP the command's process group, answer "frozen":
 *     a clone's command runs nothing until it is thawed),
 *     "prime <unix-ns> <hex>" (a standby clone, before it is anyone's: what "sync" does except the
 *     thaw, plus one TCP exchange with itself over loopback, answer "primed": the kernel paths a
 *     sync and a first request run are then translated in this qemu),
 *     "sync <unix-ns> <hex>" (after a snapshot restore: set the wall clock, mix the bytes into the
 *     kernel's entropy pool with credit and force a CRNG reseed, announce the NIC's MAC to the new
 *     slirp with an ARP request, thaw the command, answer "synced"), "stop <s>" (SIGTERM the
 *     command, SIGKILL its process group after <s> seconds), "kill <n>" (signal n to it);
 *  5. when the command exits, say "exit <code>" (or "signal <n>"), sync the disks and power off.
 * The host end of the protocol is shoal.runtimes.vm.channel.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <linux/reboot.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CONTROL "/dev/ttyS1"
#define CONSOLE "/dev/console"
#define CONFIG "/srv/shoal/"
#define GUEST_INIT CONFIG "init"
#define WORKDIR "/srv/app"
#define NIC "eth0"
#define GUEST_IP "10.0.2.15" /* slirp's defaults, set up by stage one */
#define NETMASK "255.255.255.0"
#define GATEWAY_IP "10.0.2.2"
#define READY_POLL_MS 10
#define ENTROPY_MAX 256

extern char **environ;

static int control = -1;
static pid_t app = 0;
static int port = 0;
static double grace = 10.0;
static int ready = 0;
static int frozen = 0; /* the command's group is SIGSTOPped (set before a snapshot) */
static int64_t kill_at = 0; /* monotonic ms: SIGKILL the command's group then (0: not stopping) */
/* Opened at boot, before any snapshot: a restored clone then runs only the sync's own kernel
 * paths (under TCG each first run of a kernel path is translated anew in every clone). */
static int pool = -1;                /* /dev/urandom */
static int raw = -1;                 /* AF_PACKET socket on eth0 */
static unsigned char frame[42];      /* the ARP request announce() sends */
static struct sockaddr_ll broadcast; /* where it goes */

/* The VM's end. The machine has no ACPI to power off with: a reset (reboot=t, a triple fault)
 * ends qemu, which runs with -no-reboot. */
static void power_off(void) {
    sync();
    reboot(LINUX_REBOOT_CMD_RESTART);
    sleep(5);
    _exit(1);
}

static void fail(const char *what) {
    fprintf(stderr, "shoal-init: %s: %s\n", what, strerror(errno));
    power_off();
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *format, ...) {
    char line[128];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line - 1, format, args);
    va_end(args);
    if (n < 0 || n > (int)sizeof line - 2) return;
    line[n++] = '\n';
    for (int done = 0; done < n;) {
        ssize_t w = write(control, line + done, (size_t)(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        done += (int)w;
    }
}

/* The whole file, NUL-terminated (so a one-number file reads as a string); NULL if missing. */
static char *slurp(const char *name, size_t *size) {
    char path[256];
    snprintf(path, sizeof path, CONFIG "%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 4096, len = 0;
    char *data = malloc(cap + 1);
    for (;;) {
        if (len == cap) data = realloc(data, (cap *= 2) + 1);
        ssize_t r = read(fd, data + len, cap - len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    data[len] = '\0';
    if (size) *size = len;
    return data;
}

/* A NUL-separated file as a NULL-terminated vector. */
static char **vector(const char *name) {
    size_t size = 0;
    char *data = slurp(name, &size);
    if (data == NULL) return NULL;
    size_t count = 0;
    for (size_t i = 0; i < size; i++) count += data[i] == '\0';
    char **out = calloc(count + 1, sizeof *out);
    size_t at = 0;
    for (size_t i = 0, start = 0; i < size; i++) {
        if (data[i] == '\0') {
            out[at++] = data + start;
            start = i + 1;
        }
    }
    return out;
}

static void start(char **argv, char **env) {
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) { /* the command: own session, console output, never a shell */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        if (chdir(WORKDIR) < 0) perror("shoal-init: chdir " WORKDIR);
        int null = open("/dev/null", O_RDONLY);
        int out = open(CONSOLE, O_WRONLY | O_NOCTTY);
        dup2(null, 0);
        dup2(out, 1);
        dup2(out, 2);
        environ = env; /* execvp looks the command up in the service's PATH */
        execvp(argv[0], argv);
        fprintf(stderr, "shoal-init: cannot start %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    app = pid;
}

static int connect_local(int timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = timeout_s};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Seconds on the guest's boot clock, for the boot timeline in the log. Under TCG it stands
 * still through part of early boot (about 1 s behind the host's wall clock by the time init
 * runs here); differences between two lines are real. */
static double boot_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check_ready(void) {
    if (ready) return;
    int fd = port ? connect_local(1) : -2;
    if (fd == -1) return;
    if (fd >= 0) close(fd);
    ready = 1;
    say("ready");
    fprintf(stderr, "shoal-init: ready at %.2fs on the guest clock (port %d accepts)\n",
            boot_seconds(), port);
}

/* One request to the service before the snapshot, so its first-request work (lazy imports,
 * caches) is already done in every restored clone. */
static void warm(const char *path) {
    int fd = connect_local(10);
    if (fd >= 0) {
        char request[512];
        int n = snprintf(request, sizeof request,
                         "GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: shoal-warmup\r\n\r\n",
                         path[0] ? path : "/");
        if (n > 0 && n < (int)sizeof request && write(fd, request, (size_t)n) == n) {
            char sink[4096];
            while (read(fd, sink, sizeof sink) > 0) {
            }
        }
        close(fd);
    }
    say("warmed");
}

/* A standby's prime: one TCP exchange of its own over loopback (never with the frozen command),
 * so the kernel's TCP paths a first request runs are translated in this qemu ahead of it. */
static void exercise_tcp(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t size = sizeof addr;
    char sink[64];
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (server < 0) return;
    if (bind(server, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(server, 1) < 0 ||
        getsockname(server, (struct sockaddr *)&addr, &size) < 0) {
        close(server);
        return;
    }
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client >= 0 && connect(client, (struct sockaddr *)&addr, sizeof addr) == 0) {
        int peer = accept4(server, NULL, NULL, SOCK_CLOEXEC);
        if (peer >= 0) {
            if (write(client, "GET / HTTP/1.0\r\n\r\n", 18) == 18 && read(peer, sink, sizeof sink) > 0 &&
                write(peer, "HTTP/1.0 200 OK\r\n\r\n", 19) == 19)
                (void)!read(client, sink, sizeof sink);
            close(peer);
        }
    }
    if (client >= 0) close(client);
    close(server);
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* After a restore: the host's wall clock, fresh entropy credited and a CRNG reseed. */
static void set_clock_and_entropy(const char *args) {
    char *rest = NULL;
    long long nanos = strtoll(args, &rest, 10);
    struct timespec ts = {.tv_sec = nanos / 1000000000LL, .tv_nsec = nanos % 1000000000LL};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) perror("shoal-init: clock_settime");
    while (rest && *rest == ' ') rest++;
    struct {
        struct rand_pool_info info;
        unsigned char bytes[ENTROPY_MAX];
    } entropy = {0};
    int count = 0;
    while (rest && count < ENTROPY_MAX && hex_value(rest[0]) >= 0 && hex_value(rest[1]) >= 0) {
        entropy.bytes[count++] = (unsigned char)(hex_value(rest[0]) << 4 | hex_value(rest[1]));
        rest += 2;
    }
    entropy.info.entropy_count = count * 8;
    entropy.info.buf_size = count;
    if (ioctl(pool, RNDADDENTROPY, &entropy) < 0 || ioctl(pool, RNDRESEEDCRNG) < 0)
        perror("shoal-init: entropy");
}

/* After a restore the host side of the network is a new slirp that does not know this guest's
 * MAC yet (it would drop the first forwarded connection while it asks): an ARP request for the
 * gateway tells it. The socket and the frame are made at boot (prepare_announce). */
static void prepare_announce(void) {
    raw = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, NIC, IFNAMSIZ - 1);
    unsigned char mac[6];
    int index = -1;
    if (raw >= 0 && ioctl(raw, SIOCGIFHWADDR, &ifr) == 0) {
        memcpy(mac, ifr.ifr_hwaddr.sa_data, 6); /* before SIOCGIFINDEX: the same union */
        if (ioctl(raw, SIOCGIFINDEX, &ifr) == 0) index = ifr.ifr_ifindex;
    }
    if (index < 0) {
        perror("shoal-init: cannot prepare the ARP announcement on " NIC);
        if (raw >= 0) close(raw);
        raw = -1;
        return;
    }
    struct in_addr guest, gateway;
    inet_pton(AF_INET, GUEST_IP, &guest);
    inet_pton(AF_INET, GATEWAY_IP, &gateway);
    memset(frame, 0xff, 6);
    memcpy(frame + 6, mac, 6);
    frame[12] = 0x08, frame[13] = 0x06;                     /* ARP */
    const unsigned char head[8] = {0, 1, 8, 0, 6, 4, 0, 1}; /* Ethernet, IPv4, request */
    memcpy(frame + 14, head, 8);
    memcpy(frame + 22, mac, 6);
    memcpy(frame + 28, &guest, 4);
    memset(frame + 32, 0, 6);
    memcpy(frame + 38, &gateway, 4);
    broadcast.sll_family = AF_PACKET;
    broadcast.sll_ifindex = index;
    broadcast.sll_halen = 6;
    memset(broadcast.sll_addr, 0xff, 6);
}

static void announce(void) {
    if (raw < 0) return; /* said at boot */
    if (sendto(raw, frame, sizeof frame, 0, (struct sockaddr *)&broadcast, sizeof broadcast) < 0)
        perror("shoal-init: cannot announce " NIC);
}

/* No answer if the group cannot be stopped: the maker then gives up (no snapshot of a command
 * that would run inside standby clones). */
static void freeze(void) {
    if (app > 0 && kill(-app, SIGSTOP) < 0) {
        perror("shoal-init: cannot stop the command for the snapshot");
        return;
    }
    frozen = app > 0;
    say("frozen");
}

static void thaw(void) {
    if (frozen && app > 0) kill(-app, SIGCONT);
    frozen = 0;
}

static void stop(double seconds) {
    thaw();
    if (app <= 0 || kill(app, SIGTERM) < 0) return;
    kill_at = now_ms() + (int64_t)(seconds * 1000);
    if (kill_at == 0) kill_at = 1;
}

static void handle(char *line) {
    char *rest = strchr(line, ' ');
    if (rest) *rest++ = '\0';
    else rest = line + strlen(line);
    if (strcmp(line, "sync") == 0) {
        set_clock_and_entropy(rest);
        announce();
        thaw();
        say("synced");
    } else if (strcmp(line, "prime") == 0) {
        set_clock_and_entropy(rest);
        announce();
        exercise_tcp();
        say("primed");
    } else if (strcmp(line, "stop") == 0) {
        stop(*rest ? strtod(rest, NULL) : 10.0);
    } else if (strcmp(line, "warm") == 0) {
        warm(rest);
    } else if (strcmp(line, "freeze") == 0) {
        freeze();
    } else if (strcmp(line, "kill") == 0 && app > 0) {
        thaw();
        kill(app, atoi(rest));
    }
}

/* Reap every child (orphans land here too); true once the command itself has ended. */
static int reap(void) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != app) continue;
        if (WIFSIGNALED(status)) say("signal %d", WTERMSIG(status));
        else say("exit %d", WEXITSTATUS(status));
        return 1;
    }
    return 0;
}

static void open_control(void) {
    control = open(CONTROL, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (control < 0) fail("open " CONTROL);
    struct termios mode;
    if (tcgetattr(control, &mode) == 0) {
        cfmakeraw(&mode);
        cfsetispeed(&mode, B115200); /* the fastest the 8250 goes: qemu paces the line's */
        cfsetospeed(&mode, B115200); /* characters by its baud rate */
        tcsetattr(control, TCSANOW, &mode);
    }
    tcflush(control, TCIOFLUSH);
}

/* ---------------------------------------------------------------- stage one (/init) */

static void mount_or_fail(const char *source, const char *target, const char *type,
                          unsigned long flags) {
    if (mount(source, target, type, flags, NULL) != 0) {
        fprintf(stderr, "shoal-init: cannot mount %s on %s: %s\n", source, target,
                strerror(errno));
        power_off();
    }
}

static void set_interface(int s, const char *name, unsigned long request, const char *ip) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    struct sockaddr_in *address = (struct sockaddr_in *)&ifr.ifr_addr;
    address->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &address->sin_addr);
    if (ioctl(s, request, &ifr) != 0) fail("configure " NIC);
}

static void link_up(int s, const char *name) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) fail("read the flags of a network interface");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) fail("bring a network interface up");
}

/* lo up (the kernel gives it 127.0.0.1), eth0 with slirp's address, the default route. */
static void configure_network(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) fail("socket");
    link_up(s, "lo");
    set_interface(s, NIC, SIOCSIFADDR, GUEST_IP);
    set_interface(s, NIC, SIOCSIFNETMASK, NETMASK);
    link_up(s, NIC);
    struct rtentry route;
    memset(&route, 0, sizeof route);
    struct sockaddr_in *field = (struct sockaddr_in *)&route.rt_dst;
    field->sin_family = AF_INET; /* 0.0.0.0 */
    field = (struct sockaddr_in *)&route.rt_genmask;
    field->sin_family = AF_INET; /* /0 */
    field = (struct sockaddr_in *)&route.rt_gateway;
    field->sin_family = AF_INET;
    inet_pton(AF_INET, GATEWAY_IP, &field->sin_addr);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    route.rt_dev = NIC;
    if (ioctl(s, SIOCADDRT, &route) != 0) fail("add the default route");
    close(s);
}

/* What a distribution's initramfs does, as system calls: never returns. */
static void stage_one(void) {
    mount_or_fail("dev", "/dev", "devtmpfs", 0);
    mount_or_fail("proc", "/proc", "proc", 0);
    mount_or_fail("sys", "/sys", "sysfs", 0);
    /* built-in drivers have probed before /init runs: this wait is for a slow host, at most 2 s */
    for (int i = 0; i < 1000 && access("/dev/vdb", F_OK) != 0; i++) usleep(2000);
    configure_network();
    mount_or_fail("/dev/vda", "/newroot", "ext4", MS_NOATIME);
    mount_or_fail("/dev/vdb", "/newroot/srv", "ext4", MS_NOATIME);
    mount_or_fail("/dev", "/newroot/dev", NULL, MS_MOVE);
    mount_or_fail("/proc", "/newroot/proc", NULL, MS_MOVE);
    mount_or_fail("/sys", "/newroot/sys", NULL, MS_MOVE);
    if (chdir("/newroot") != 0) fail("chdir /newroot");
    mount_or_fail(".", "/", NULL, MS_MOVE);
    if (chroot(".") != 0 || chdir("/") != 0) fail("chroot into the root disk");
    char *args[] = {GUEST_INIT, NULL};
    execv(GUEST_INIT, args);
    fail("exec " GUEST_INIT);
}

/* ---------------------------------------------------------------- the guest init */

int main(int argc, char **args) {
    if (getpid() == 1 && argc > 0 && strcmp(args[0], "/init") == 0) stage_one();
    mkdir("/run", 0755);
    mkdir("/tmp", 01777);
    mount("tmpfs", "/run", "tmpfs", 0, NULL);
    mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
    setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", 1);
    char **argv = vector("argv");
    char **env = vector("env");
    if (argv == NULL || argv[0] == NULL || env == NULL) fail("cannot read " CONFIG "argv and env");
    char *number = slurp("port", NULL);
    port = number ? atoi(number) : 0;
    number = slurp("grace", NULL);
    grace = number ? strtod(number, NULL) : 10.0;
    open_control();
    pool = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (pool < 0) fail("open /dev/urandom");
    prepare_announce();

    sigset_t watched;
    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, SIGTERM);
    sigprocmask(SIG_BLOCK, &watched, NULL);
    int signals = signalfd(-1, &watched, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) fail("signalfd");

    fprintf(stderr, "shoal-init: starting %s at %.2fs on the guest clock\n", argv[0],
            boot_seconds());
    start(argv, env);
    char buffer[4096];
    size_t held = 0;
    for (;;) {
        check_ready();
        int timeout = ready ? -1 : READY_POLL_MS;
        if (kill_at) {
            int64_t left = kill_at - now_ms();
            if (left <= 0) {
                kill(-app, SIGKILL);
                kill(app, SIGKILL);
                kill_at = 0;
            } else if (timeout < 0 || left < timeout) {
                timeout = (int)left;
            }
        }
        struct pollfd fds[2] = {{.fd = control, .events = POLLIN},
                                {.fd = signals, .events = POLLIN}};
        if (poll(fds, 2, timeout) < 0 && errno != EINTR) fail("poll");
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(signals, &info, sizeof info) == sizeof info) {
                if (info.ssi_signo == SIGTERM) stop(grace);
            }
            if (reap()) break;
        }
        if (fds[0].revents & POLLIN) {
            ssize_t r = read(control, buffer + held, sizeof buffer - 1 - held);
            if (r > 0) {
                held += (size_t)r;
                buffer[held] = '\0';
                char *end;
                while ((end = memchr(buffer, '\n', held)) != NULL) {
                    *end = '\0';
                    if (end > buffer && end[-1] == '\r') end[-1] = '\0';
                    handle(buffer);
                    held -= (size_t)(end + 1 - buffer);
                    memmove(buffer, end + 1, held);
                }
                if (held == sizeof buffer - 1) held = 0; /* an overlong line: dropped */
            } else if (r == 0) {
                usleep(50000);
            }
        }
    }
    power_off();
    return 0;
}
