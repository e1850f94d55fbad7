/*
 * Board-independent part of the test firmware: banner, line echo and ticks.
 *
 * Included once by each board's main.c, which must first define:
 *   BOARD                 board name string, e.g. "stm32f4"
 *   uart_putc(c)          blocking transmit of one byte on the console UART
 *   ticker_start()        (re)start a periodic 100 ms timer interrupt, first one 100 ms from now
 *   ticker_stop()         stop it, leaving no tick pending
 * and call console_rx() for every received byte and console_tick() from the timer
 * interrupt. Both must run at the same interrupt priority (no nesting), so the
 * output of one handler never interleaves with the other's and no locking is needed.
 *
 * Optionally it may define CONSOLE_LINE_HOOK(s, n), called with every complete console
 * line after it was echoed and handled (the STM32F4 forwards it to its bus UART).
 */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <stdint.h>

#ifndef BUILD_ID
#define BUILD_ID "dev"
#endif

/* Kept as one NUL-terminated string in .rodata: tools find the firmware by searching
 * the image bytes for "BOOT jumpstarter-renode-fw board=". */
static const char banner[] = "BOOT jumpstarter-renode-fw board=" BOARD " build=" BUILD_ID "\r\n";

#ifndef CONSOLE_LINE_HOOK
#define CONSOLE_LINE_HOOK(s, n) ((void)0)
#endif

#define LINE_MAX 120

static char line[LINE_MAX];
static uint32_t line_len;
static uint32_t tick_count;
static uint32_t ticking;

static void put_buf(const char *s, uint32_t n)
{
    while (n--)
        uart_putc(*s++);
}

static void put_str(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

static void put_uint(uint32_t n)
{
    char digits[10];
    uint32_t i = 0;

    do {
        digits[i++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (i)
        uart_putc(digits[--i]);
}

static int line_is(const char *cmd)
{
    uint32_t i = 0;

    for (; i < line_len; i++)
        if (cmd[i] != line[i]) /* also stops at cmd's NUL */
            return 0;
    return cmd[i] == '\0';
}

static void console_banner(void)
{
    put_str(banner);
}

/* Adds one received byte to buf (LINE_MAX chars, *len used). Returns 1 when it ends a
 * non-empty line; the caller then uses buf[0..*len) and sets *len to 0. "\r\n" ends one
 * line: its "\n" is an empty line, which is ignored. Shared with other line inputs (the
 * STM32F4's bus) so they follow the same rules as the console. */
static int line_collect(char *buf, uint32_t *len, char c)
{
    if (c != '\r' && c != '\n') {
        if (*len < LINE_MAX) /* longer lines are truncated, not split */
            buf[(*len)++] = c;
        return 0;
    }
    return *len != 0;
}

/* One received byte on the console. */
static void console_rx(char c)
{
    if (!line_collect(line, &line_len, c))
        return;

    put_str("echo: ");
    put_buf(line, line_len);
    put_str("\r\n");

    if (line_is("ticks on")) {
        tick_count = 0;
        ticking = 1;
        ticker_start();
    } else if (line_is("ticks off")) {
        ticking = 0;
        ticker_stop();
    }
    CONSOLE_LINE_HOOK(line, line_len);
    line_len = 0;
}

static void console_tick(void)
{
    if (!ticking)
        return;
    put_str("tick ");
    put_uint(++tick_count);
    put_str("\r\n");
}

#endif
