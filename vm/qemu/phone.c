/*
 * phone.c - the recipe guest's "phone UI": one static program, PID 1's only child.
 *
 * Why KMS and not /dev/fb0: with bochs-drm on Linux 6.1 the fbdev emulation is a shadow buffer
 * flushed by deferred I/O every 50 ms, and plain write() to /dev/fb0 never shows at all. A KMS
 * dumb buffer on bochs lives in VRAM, so a store shows at QEMU's next display refresh with no
 * flush. Raw ioctls (kernel UAPI headers only, no libdrm) keep it one static binary.
 *
 * What it shows: a status line, the text typed so far, the last key and nav button, a dot
 * trail for single touch (ABS_X/ABS_Y: QEMU 7.2's virtio-tablet), one coloured stroke per
 * finger for multi-touch (evdev MT protocol B: ABS_MT_SLOT / ABS_MT_TRACKING_ID /
 * ABS_MT_POSITION_X/Y, QEMU >= 8.1's virtio-multitouch), and the latency-probe strip of cloudphone.vm.stamp across the top: the
 * "input sequence" field carries the number of input reports this program has applied (one per
 * evdev SYN_REPORT that changed a key or an axis); the host maps that count to the edge's own
 * input sequence numbers. F11 toggles portrait/landscape (a resolution change the host sees).
 *
 * Built at image-recipe time by cloudphone.vm.qemu.image with the machine's gcc; the font is a
 * header rendered there too (font.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <drm.h>
#include <drm_mode.h>

#include "font.h" /* FONT_W, FONT_H, FONT_FIRST, FONT_COUNT, font_alpha[][FONT_H][FONT_W] */

#define MAX_INPUTS 16
#define MT_SLOTS 16
#define STAMP_BLOCKS 40
#define TEXT_MAX 512

static int drm_fd = -1;
static uint32_t crtc_id, conn_id;
static struct drm_mode_modeinfo base_mode;
static int landscape;

struct buffer {
    uint32_t handle, fb_id, width, height, pitch;
    uint64_t size;
    uint32_t *px;
};
static struct buffer buf;

static unsigned input_count;   /* reports applied: the stamp's sequence field */
static unsigned frame_count;   /* redraws: the stamp's frame field */
static char text[TEXT_MAX];
static size_t text_len;
static char last_key[32] = "-";
static char last_nav[16] = "-";
static int shift_down;
static int touch_x = -1, touch_y = -1, touch_down;
static unsigned touch_count;
static int touch_is_mt; /* the last touch came from a multi-touch device: strokes, no dot */

/* One finger of a multi-touch device: what the last report left, and what this one changes. */
struct finger {
    int tracking_id;        /* -1: no contact */
    int x, y;               /* last drawn point, screen pixels; -1: none yet */
    int raw_x, raw_y;       /* device units */
    int new_id, moved;      /* this report: tracking id changed / position changed */
};

struct input_dev {
    int fd;
    int has_abs;
    int abs_min[2], abs_max[2];
    int pending;         /* this report changed something */
    int pending_x, pending_y, pending_btn; /* -1: unchanged */
    int has_mt, mt_slot; /* multi-touch device; slot the next ABS_MT_* value is for */
    int mt_min[2], mt_max[2];
    struct finger fingers[MT_SLOTS];
};
static struct input_dev inputs[MAX_INPUTS];
static int n_inputs;

static void die(const char *what) {
    fprintf(stderr, "phone: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---------------------------------------------------------------- KMS */

static void destroy_buffer(struct buffer *b) {
    if (!b->px)
        return;
    munmap(b->px, b->size);
    ioctl(drm_fd, DRM_IOCTL_MODE_RMFB, &b->fb_id);
    struct drm_mode_destroy_dumb d = {.handle = b->handle};
    ioctl(drm_fd, DRM_IOCTL_MODE_DESTROY_DUMB, &d);
    memset(b, 0, sizeof(*b));
}

static void create_buffer(struct buffer *b, uint32_t w, uint32_t h) {
    struct drm_mode_create_dumb c = {.width = w, .height = h, .bpp = 32};
    if (ioctl(drm_fd, DRM_IOCTL_MODE_CREATE_DUMB, &c) < 0)
        die("create dumb");
    struct drm_mode_fb_cmd f = {.width = w, .height = h, .pitch = c.pitch, .bpp = 32,
                                .depth = 24, .handle = c.handle};
    if (ioctl(drm_fd, DRM_IOCTL_MODE_ADDFB, &f) < 0)
        die("addfb");
    struct drm_mode_map_dumb m = {.handle = c.handle};
    if (ioctl(drm_fd, DRM_IOCTL_MODE_MAP_DUMB, &m) < 0)
        die("map dumb");
    void *p = mmap(0, c.size, PROT_READ | PROT_WRITE, MAP_SHARED, drm_fd, m.offset);
    if (p == MAP_FAILED)
        die("mmap");
    b->handle = c.handle;
    b->fb_id = f.fb_id;
    b->width = w;
    b->height = h;
    b->pitch = c.pitch;
    b->size = c.size;
    b->px = p;
}

static struct drm_mode_modeinfo oriented_mode(void) {
    struct drm_mode_modeinfo m = base_mode;
    int portrait = base_mode.vdisplay >= base_mode.hdisplay;
    if (landscape == portrait) { /* swap to the other orientation */
        m.hdisplay = base_mode.vdisplay;
        m.vdisplay = base_mode.hdisplay;
        m.hsync_start = m.hdisplay + 8;
        m.hsync_end = m.hdisplay + 16;
        m.htotal = m.hdisplay + 32;
        m.vsync_start = m.vdisplay + 2;
        m.vsync_end = m.vdisplay + 4;
        m.vtotal = m.vdisplay + 8;
        m.clock = (uint32_t)((uint64_t)m.htotal * m.vtotal * 60 / 1000);
        m.vrefresh = 60;
        m.type = DRM_MODE_TYPE_USERDEF;
        snprintf(m.name, sizeof(m.name), "%ux%u", m.hdisplay, m.vdisplay);
    }
    return m;
}

static void set_mode(void) {
    struct drm_mode_modeinfo m = oriented_mode();
    struct buffer old = buf;
    create_buffer(&buf, m.hdisplay, m.vdisplay);
    struct drm_mode_crtc c = {.crtc_id = crtc_id, .fb_id = buf.fb_id, .mode_valid = 1,
                              .mode = m, .count_connectors = 1,
                              .set_connectors_ptr = (uint64_t)(uintptr_t)&conn_id};
    if (ioctl(drm_fd, DRM_IOCTL_MODE_SETCRTC, &c) < 0)
        die("setcrtc");
    destroy_buffer(&old);
    fprintf(stderr, "phone: mode %ux%u\n", m.hdisplay, m.vdisplay);
}

static void open_display(void) {
    for (int tries = 0; (drm_fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC)) < 0; tries++) {
        if (tries > 200)
            die("open /dev/dri/card0");
        usleep(20000);
    }
    struct drm_mode_card_res res = {0};
    if (ioctl(drm_fd, DRM_IOCTL_MODE_GETRESOURCES, &res) < 0)
        die("getresources");
    uint32_t crtcs[8] = {0}, conns[8] = {0};
    if (res.count_crtcs > 8) res.count_crtcs = 8;
    if (res.count_connectors > 8) res.count_connectors = 8;
    res.count_fbs = 0;
    res.count_encoders = 0;
    res.crtc_id_ptr = (uint64_t)(uintptr_t)crtcs;
    res.connector_id_ptr = (uint64_t)(uintptr_t)conns;
    if (ioctl(drm_fd, DRM_IOCTL_MODE_GETRESOURCES, &res) < 0)
        die("getresources 2");
    for (uint32_t i = 0; i < res.count_connectors; i++) {
        struct drm_mode_get_connector gc = {.connector_id = conns[i]};
        if (ioctl(drm_fd, DRM_IOCTL_MODE_GETCONNECTOR, &gc) < 0 || gc.count_modes == 0)
            continue;
        struct drm_mode_modeinfo *modes = calloc(gc.count_modes, sizeof(*modes));
        gc.count_props = gc.count_encoders = 0;
        gc.modes_ptr = (uint64_t)(uintptr_t)modes;
        if (ioctl(drm_fd, DRM_IOCTL_MODE_GETCONNECTOR, &gc) < 0)
            die("getconnector");
        base_mode = modes[0];
        for (uint32_t k = 0; k < gc.count_modes; k++)
            if (modes[k].type & DRM_MODE_TYPE_PREFERRED) {
                base_mode = modes[k];
                break;
            }
        free(modes);
        conn_id = conns[i];
        crtc_id = crtcs[0];
        return;
    }
    fprintf(stderr, "phone: no connector with modes\n");
    exit(1);
}

/* ---------------------------------------------------------------- drawing */

static inline void fill(int x0, int y0, int x1, int y1, uint32_t color) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > (int)buf.width) x1 = buf.width;
    if (y1 > (int)buf.height) y1 = buf.height;
    uint32_t stride = buf.pitch / 4;
    for (int y = y0; y < y1; y++) {
        uint32_t *row = buf.px + (size_t)y * stride;
        for (int x = x0; x < x1; x++)
            row[x] = color;
    }
}

static int draw_text(int x, int y, const char *s, uint32_t fg, uint32_t bg, int max_w) {
    uint32_t stride = buf.pitch / 4;
    int x_start = x;
    for (; *s; s++) {
        if (x + FONT_W > x_start + max_w) {
            x = x_start;
            y += FONT_H;
        }
        if (y + FONT_H > (int)buf.height)
            break;
        int c = (unsigned char)*s - FONT_FIRST;
        if (c < 0 || c >= FONT_COUNT)
            c = '?' - FONT_FIRST;
        for (int gy = 0; gy < FONT_H; gy++) {
            uint32_t *row = buf.px + (size_t)(y + gy) * stride + x;
            for (int gx = 0; gx < FONT_W && x + gx < (int)buf.width; gx++)
                row[gx] = font_alpha[c][gy][gx] > 127 ? fg : bg;
        }
        x += FONT_W;
    }
    return y + FONT_H;
}

#define BG 0x00102040u
#define PANEL 0x00203060u
#define FG 0x00f0f0f0u
#define ACCENT 0x00ffc020u

static int strip_rows(void) {
    int r = buf.height / 80;
    return r < 4 ? 4 : r;
}

static void draw_stamp(void) {
    unsigned seq = input_count & 0xffff, frame = frame_count & 0xffff;
    unsigned value = (seq << 16) | frame, check = 0;
    for (int s = 0; s < 32; s += 4)
        check ^= (value >> s) & 0xf;
    int bits[STAMP_BLOCKS], n = 0;
    bits[n++] = 1;
    bits[n++] = 0;
    for (int i = 15; i >= 0; i--) bits[n++] = (seq >> i) & 1;
    for (int i = 15; i >= 0; i--) bits[n++] = (frame >> i) & 1;
    for (int i = 3; i >= 0; i--) bits[n++] = (check >> i) & 1;
    bits[n++] = 0;
    bits[n++] = 1;
    int rows = strip_rows();
    for (int i = 0; i < STAMP_BLOCKS; i++) {
        int x0 = i * (int)buf.width / STAMP_BLOCKS, x1 = (i + 1) * (int)buf.width / STAMP_BLOCKS;
        fill(x0, 0, x1, rows, bits[i] ? 0x00ffffffu : 0);
    }
    /* The stamp is drawn last, so this is where a frame is done: virtio-gpu shows a dumb
     * buffer's stores only after DIRTYFB (bochs scans out VRAM and ignores it). */
    struct drm_mode_fb_dirty_cmd dirty = {.fb_id = buf.fb_id};
    ioctl(drm_fd, DRM_IOCTL_MODE_DIRTYFB, &dirty);
}

/* Layout (y offsets from the top): strip, status, typed text panel, info lines, touch area. */
static int y_status(void) { return strip_rows() + 8; }
static int y_text(void) { return y_status() + FONT_H + 8; }
static int text_rows(void) { return 4; }
static int y_info(void) { return y_text() + text_rows() * FONT_H + 16; }
static int y_touch(void) { return y_info() + 2 * FONT_H + 8; }

static void draw_status(void) {
    char line[96];
    snprintf(line, sizeof(line), "cloudphone qemu %ux%u", buf.width, buf.height);
    fill(0, y_status(), buf.width, y_status() + FONT_H, BG);
    draw_text(8, y_status(), line, ACCENT, BG, buf.width - 16);
}

static void draw_typed(void) {
    int cols = (buf.width - 16) / FONT_W, rows = text_rows();
    size_t shown = (size_t)cols * rows;
    const char *start = text_len > shown ? text + text_len - shown : text;
    fill(0, y_text(), buf.width, y_text() + rows * FONT_H + 8, PANEL);
    char tmp[TEXT_MAX + 2];
    snprintf(tmp, sizeof(tmp), "%s_", start);
    draw_text(8, y_text() + 4, tmp, FG, PANEL, cols * FONT_W);
}

static void draw_info(void) {
    char line[128];
    fill(0, y_info(), buf.width, y_info() + 2 * FONT_H, BG);
    snprintf(line, sizeof(line), "key %s nav %s", last_key, last_nav);
    draw_text(8, y_info(), line, FG, BG, buf.width - 16);
    snprintf(line, sizeof(line), "touch %d,%d %s #%u", touch_x, touch_y,
             touch_down > 1 ? "fingers" : touch_down ? "down" : "up", touch_count);
    draw_text(8, y_info() + FONT_H, line, FG, BG, buf.width - 16);
}

static void draw_all(void) {
    fill(0, 0, buf.width, buf.height, BG);
    fill(0, y_touch(), buf.width, buf.height, 0x00081828u);
    draw_status();
    draw_typed();
    draw_info();
}

static void draw_touch_dot(void) {
    if (touch_is_mt || touch_x < 0 || touch_y < y_touch())
        return;
    int r = 14;
    uint32_t color = touch_down ? 0x00ff4040u : 0x0040ff40u;
    fill(touch_x - r, touch_y - r, touch_x + r, touch_y + r, color);
}

/* One colour per slot, none of them the single-touch red/green. */
static const uint32_t finger_colors[] = {0x0020d0ffu, 0x00ff40ffu, 0x00ffff40u, 0x0080ff80u,
                                         0x00ff8020u, 0x00a080ffu, 0x0040ffd0u, 0x00ffffffu};

/* A stroke segment: squares along the line, clipped to the touch area. */
static void draw_segment(int x0, int y0, int x1, int y1, uint32_t color) {
    int r = 6, dx = x1 - x0, dy = y1 - y0;
    int steps = abs(dx) > abs(dy) ? abs(dx) : abs(dy);
    steps = steps / 3 + 1;
    for (int i = 0; i <= steps; i++) {
        int x = x0 + dx * i / steps, y = y0 + dy * i / steps;
        int top = y - r < y_touch() ? y_touch() : y - r;
        if (y + r > top)
            fill(x - r, top, x + r, y + r, color);
    }
}

/* ---------------------------------------------------------------- input */

static const char *const keynames[KEY_MAX + 1] = {
    [KEY_ENTER] = "ENTER", [KEY_BACKSPACE] = "BKSP", [KEY_TAB] = "TAB", [KEY_ESC] = "ESC",
    [KEY_LEFTSHIFT] = "SHIFT", [KEY_RIGHTSHIFT] = "SHIFT", [KEY_LEFTCTRL] = "CTRL",
    [KEY_LEFTALT] = "ALT", [KEY_UP] = "UP", [KEY_DOWN] = "DOWN", [KEY_LEFT] = "LEFT",
    [KEY_RIGHT] = "RIGHT", [KEY_HOMEPAGE] = "HOME", [KEY_BACK] = "BACK", [KEY_MENU] = "MENU",
    [KEY_COMPOSE] = "COMPOSE", [KEY_F11] = "F11", [KEY_SPACE] = "SPACE",
};

/* US layout: evdev code -> (plain, shifted) character. */
static char key_char(int code, int shifted) {
    static const char *plain = "\0\0" "1234567890-=\0\0" "qwertyuiop[]\0\0" "asdfghjkl;'`\0\\"
                               "zxcvbnm,./\0*\0 ";
    static const char *shift = "\0\0" "!@#$%^&*()_+\0\0" "QWERTYUIOP{}\0\0" "ASDFGHJKL:\"~\0|"
                               "ZXCVBNM<>?\0*\0 ";
    if (code < 0 || code > KEY_SPACE)
        return 0;
    return shifted ? shift[code] : plain[code];
}

static void apply_key(int code, int value, int *redraw_all) {
    if (code == KEY_LEFTSHIFT || code == KEY_RIGHTSHIFT) {
        shift_down = value != 0;
        return;
    }
    if (value != 1)
        return;
    const char *name = keynames[code];
    char ch = key_char(code, shift_down);
    if (ch) {
        snprintf(last_key, sizeof(last_key), "'%c'", ch);
        if (text_len < TEXT_MAX - 1) {
            text[text_len++] = ch;
            text[text_len] = 0;
        }
    } else if (name) {
        snprintf(last_key, sizeof(last_key), "%s", name);
    } else {
        snprintf(last_key, sizeof(last_key), "%d", code);
    }
    switch (code) {
    case KEY_ENTER:
        if (text_len < TEXT_MAX - 1) {
            text[text_len++] = ' ';
            text[text_len] = 0;
        }
        break;
    case KEY_BACKSPACE:
        if (text_len)
            text[--text_len] = 0;
        break;
    case KEY_BACK:
        snprintf(last_nav, sizeof(last_nav), "back");
        break;
    case KEY_HOMEPAGE:
        snprintf(last_nav, sizeof(last_nav), "home");
        text_len = 0;
        text[0] = 0;
        *redraw_all = 1;
        break;
    case KEY_COMPOSE:
    case KEY_MENU:
        snprintf(last_nav, sizeof(last_nav), "recents");
        break;
    case KEY_F11:
        landscape = !landscape;
        set_mode();
        *redraw_all = 1;
        break;
    }
}

static void open_inputs(void) {
    DIR *d = opendir("/dev/input");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && n_inputs < MAX_INPUTS) {
        if (strncmp(e->d_name, "event", 5))
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/dev/input/%s", e->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct input_dev *in = &inputs[n_inputs++];
        memset(in, 0, sizeof(*in));
        in->fd = fd;
        in->pending_x = in->pending_y = in->pending_btn = -1;
        unsigned long bits = 0;
        ioctl(fd, EVIOCGBIT(0, sizeof(bits)), &bits);
        if (bits & (1UL << EV_ABS)) {
            struct input_absinfo ai;
            in->has_abs = 1;
            for (int a = 0; a < 2; a++) {
                in->abs_min[a] = 0;
                in->abs_max[a] = 32767;
                if (ioctl(fd, EVIOCGABS(a), &ai) == 0 && ai.maximum > ai.minimum) {
                    in->abs_min[a] = ai.minimum;
                    in->abs_max[a] = ai.maximum;
                }
            }
            unsigned long absbits[(ABS_CNT + 63) / 64] = {0};
            ioctl(fd, EVIOCGBIT(EV_ABS, sizeof(absbits)), absbits);
            in->has_mt = (absbits[ABS_MT_SLOT / 64] >> (ABS_MT_SLOT % 64)) & 1;
            for (int a = 0; in->has_mt && a < 2; a++) {
                in->mt_min[a] = 0;
                in->mt_max[a] = 32767;
                if (ioctl(fd, EVIOCGABS(ABS_MT_POSITION_X + a), &ai) == 0 &&
                    ai.maximum > ai.minimum) {
                    in->mt_min[a] = ai.minimum;
                    in->mt_max[a] = ai.maximum;
                }
            }
            if (in->has_mt && ioctl(fd, EVIOCGABS(ABS_MT_SLOT), &ai) == 0)
                in->mt_slot = ai.value;
            for (int f = 0; f < MT_SLOTS; f++)
                in->fingers[f] = (struct finger){.tracking_id = -1, .x = -1, .y = -1};
        }
        char name[64] = "?";
        ioctl(fd, EVIOCGNAME(sizeof(name)), name);
        fprintf(stderr, "phone: input %s: %s%s\n", path, name,
                in->has_mt ? " (multi-touch)" : in->has_abs ? " (abs)" : "");
    }
    closedir(d);
}

static int scale_range(int min, int max, int v, int size) {
    long span = (long)max - min;
    long p = ((long)v - min) * (size - 1) / (span ? span : 1);
    return (int)(p < 0 ? 0 : p >= size ? size - 1 : p);
}

static int scale_axis(struct input_dev *in, int a, int v, int size) {
    return scale_range(in->abs_min[a], in->abs_max[a], v, size);
}

/* One ABS_MT_* value for the current slot (the kernel sends only values that changed). */
static void mt_event(struct input_dev *in, int code, int value) {
    if (code == ABS_MT_SLOT) {
        in->mt_slot = value;
        return;
    }
    if (in->mt_slot < 0 || in->mt_slot >= MT_SLOTS)
        return; /* a slot this program does not draw; still counted as a report */
    struct finger *f = &in->fingers[in->mt_slot];
    if (code == ABS_MT_TRACKING_ID) {
        f->tracking_id = value;
        f->new_id = 1;
    } else if (code == ABS_MT_POSITION_X) {
        f->raw_x = value;
        f->moved = 1;
    } else if (code == ABS_MT_POSITION_Y) {
        f->raw_y = value;
        f->moved = 1;
    }
}

/* End of a report: extend each changed finger's stroke; a new contact starts a new one. */
static void mt_apply(struct input_dev *in) {
    int down = 0;
    for (int s = 0; s < MT_SLOTS; s++) {
        struct finger *f = &in->fingers[s];
        if (f->new_id && f->tracking_id >= 0) {
            f->x = f->y = -1; /* a new finger: no segment from the last one's end */
            touch_count++;
        }
        if ((f->new_id || f->moved) && (f->tracking_id >= 0 || f->moved)) {
            int x = scale_range(in->mt_min[0], in->mt_max[0], f->raw_x, buf.width);
            int y = scale_range(in->mt_min[1], in->mt_max[1], f->raw_y, buf.height);
            uint32_t color = finger_colors[s % (sizeof(finger_colors) / sizeof(*finger_colors))];
            draw_segment(f->x < 0 ? x : f->x, f->x < 0 ? y : f->y, x, y, color);
            f->x = x;
            f->y = y;
            touch_x = x;
            touch_y = y;
        }
        f->new_id = f->moved = 0;
        down += f->tracking_id >= 0;
    }
    touch_down = down;
    touch_is_mt = 1;
}

/* Reads what is queued on one device; returns 1 when a report changed what is shown. */
static int read_input(struct input_dev *in, int *redraw_all) {
    struct input_event ev[64];
    int changed = 0;
    for (;;) {
        ssize_t n = read(in->fd, ev, sizeof(ev));
        if (n <= 0)
            break;
        for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
            struct input_event *e = &ev[i];
            if (e->type == EV_ABS && in->has_mt && e->code >= ABS_MT_SLOT &&
                e->code <= ABS_MT_TOOL_Y) {
                mt_event(in, e->code, e->value);
                in->pending = 1;
            } else if (e->type == EV_ABS && (e->code == ABS_X || e->code == ABS_Y)) {
                if (e->code == ABS_X) in->pending_x = e->value;
                else in->pending_y = e->value;
                in->pending = 1;
            } else if (e->type == EV_KEY && (e->code == BTN_LEFT || e->code == BTN_TOUCH)) {
                if (e->value != 2) {
                    in->pending_btn = e->value;
                    in->pending = 1;
                }
            } else if (e->type == EV_KEY && e->value != 2) {
                apply_key(e->code, e->value, redraw_all);
                in->pending = 1;
            } else if (e->type == EV_SYN && e->code == SYN_REPORT && in->pending) {
                if (in->has_mt)
                    mt_apply(in);
                if (in->pending_x >= 0 || in->pending_y >= 0)
                    touch_is_mt = 0;
                if (in->pending_x >= 0)
                    touch_x = scale_axis(in, 0, in->pending_x, buf.width);
                if (in->pending_y >= 0)
                    touch_y = scale_axis(in, 1, in->pending_y, buf.height);
                if (in->pending_btn >= 0 && !in->has_mt) { /* MT: BTN_TOUCH follows fingers */
                    touch_down = in->pending_btn;
                    if (touch_down)
                        touch_count++;
                }
                in->pending_x = in->pending_y = in->pending_btn = -1;
                in->pending = 0;
                input_count++;
                changed = 1;
            }
        }
    }
    return changed;
}

int main(void) {
    open_display();
    set_mode();
    draw_all();
    draw_stamp();
    open_inputs();
    struct pollfd pfd[MAX_INPUTS];
    for (int i = 0; i < n_inputs; i++)
        pfd[i] = (struct pollfd){.fd = inputs[i].fd, .events = POLLIN};
    fprintf(stderr, "phone: ready\n");
    for (;;) {
        if (poll(pfd, n_inputs, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        int changed = 0, redraw_all = 0;
        for (int i = 0; i < n_inputs; i++)
            if (pfd[i].revents & POLLIN)
                changed |= read_input(&inputs[i], &redraw_all);
        if (!changed)
            continue;
        frame_count++;
        if (redraw_all)
            draw_all();
        else {
            draw_typed();
            draw_info();
        }
        draw_touch_dot();
        draw_stamp(); /* last, so the stamp never claims input that is not drawn yet */
    }
}
